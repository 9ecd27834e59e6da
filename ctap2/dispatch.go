package ctap2

import (
	"context"
	"fmt"
)

// Command bytes (CTAP 2.1 §6 "Authenticator API").
const (
	CmdMakeCredential       byte = 0x01
	CmdGetAssertion         byte = 0x02
	CmdGetInfo              byte = 0x04
	CmdClientPIN            byte = 0x06
	CmdReset                byte = 0x07
	CmdGetNextAssertion     byte = 0x08
	CmdBioEnrollment        byte = 0x09
	CmdCredentialManagement byte = 0x0A
	CmdSelection            byte = 0x0B
	CmdLargeBlobs           byte = 0x0C
	CmdConfig               byte = 0x0D
	CmdBioEnrollmentPreview byte = 0x40 // preview alias of 0x09
	CmdCredMgmtPreview      byte = 0x41 // preview alias of 0x0A (libfido2 1.12 sends this)
)

var commandNames = map[byte]string{
	CmdMakeCredential: "makeCredential", CmdGetAssertion: "getAssertion", CmdGetInfo: "getInfo",
	CmdClientPIN: "clientPIN", CmdReset: "reset", CmdGetNextAssertion: "getNextAssertion",
	CmdBioEnrollment: "bioEnrollment", CmdCredentialManagement: "credentialManagement",
	CmdSelection: "selection", CmdLargeBlobs: "largeBlobs", CmdConfig: "config",
	CmdBioEnrollmentPreview: "bioEnrollmentPreview", CmdCredMgmtPreview: "credentialManagementPreview",
}

func commandName(cmd byte) string {
	if n, ok := commandNames[cmd]; ok {
		return n
	}
	return fmt.Sprintf("0x%02X", cmd)
}

// dispatch routes one command. Stateful follow-up commands (getNextAssertion)
// see their state only if nothing else ran in between.
func (a *Authenticator) dispatch(ctx context.Context, r request) (any, error) {
	next, enum := a.vol.takeFollowUps()
	switch r.cmd {
	case CmdGetInfo:
		return a.getInfo(ctx, r)
	case CmdMakeCredential:
		return handle(ctx, r, a.makeCredential)
	case CmdGetAssertion:
		return handle(ctx, r, a.getAssertion)
	case CmdGetNextAssertion:
		return a.getNextAssertion(ctx, r, next)
	case CmdReset:
		return a.reset(ctx, r)
	case CmdClientPIN:
		return handle(ctx, r, a.clientPIN)
	case CmdCredentialManagement, CmdCredMgmtPreview:
		return handle(ctx, r, func(ctx context.Context, r request, req *CredentialManagementRequest) (any, error) {
			return a.credentialManagement(ctx, r, req, enum)
		})
	case CmdConfig:
		return handle(ctx, r, a.authenticatorConfig)
	case CmdSelection:
		return a.selection(ctx, r)
	case CmdLargeBlobs:
		return handle(ctx, r, a.largeBlobs)
	default:
		return nil, ErrInvalidCommand
	}
}

// handle decodes and validates r's parameters as the request type of h
// ([parseRequest]) and runs h with them.
func handle[T any, P commandRequest[T]](ctx context.Context, r request, h func(context.Context, request, *T) (any, error)) (any, error) {
	req, err := parseRequest[T, P](r.params)
	if err != nil {
		return nil, err
	}
	return h(ctx, r, req)
}
