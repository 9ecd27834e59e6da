package cose

import "github.com/fxamacker/cbor/v2"

// encMode writes CTAP2 canonical CBOR (CTAP 2.1 §8).
var encMode = mustEncMode(cbor.CTAP2EncOptions())

// decMode is strict: duplicate map keys, indefinite lengths and tags are
// rejected, and nesting and container sizes are capped far above anything a
// COSE_Key needs.
var decMode = mustDecMode(cbor.DecOptions{
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	IndefLength:      cbor.IndefLengthForbidden,
	TagsMd:           cbor.TagsForbidden,
	MaxNestedLevels:  4, // the smallest the library allows
	MaxArrayElements: 16,
	MaxMapPairs:      16,
	UTF8:             cbor.UTF8RejectInvalid,
})

// The options above are constants; a failure here is a programming error
// caught by every test run, never a reaction to input.
func mustEncMode(o cbor.EncOptions) cbor.EncMode {
	m, err := o.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}

func mustDecMode(o cbor.DecOptions) cbor.DecMode {
	m, err := o.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}
