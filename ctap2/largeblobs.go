package ctap2

// largeBlobWriteState is a serialized large-blob array being written in
// fragments (authenticatorLargeBlobs set with offsets).
type largeBlobWriteState struct{}
