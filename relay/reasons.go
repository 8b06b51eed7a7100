//go:build linux

package relay

import "github.com/pion/stun/v4"

// reasonPhrase is the reason phrase sent with an error code: the names of
// RFC 8489 §14.8, RFC 8656 §18 and RFC 6156 §10, with coturn's wording
// where operators know it ("Forbidden IP"). pion sends every error with an
// empty phrase, which clients log as "403 ()".
func reasonPhrase(code stun.ErrorCode) string {
	switch code {
	case stun.CodeTryAlternate:
		return "Try Alternate"
	case stun.CodeBadRequest:
		return "Bad Request"
	case stun.CodeUnauthorized:
		return "Unauthorized"
	case stun.CodeForbidden:
		return "Forbidden IP"
	case stun.CodeUnknownAttribute:
		return "Unknown Attribute"
	case stun.CodeAllocMismatch:
		return "Allocation Mismatch"
	case stun.CodeStaleNonce:
		return "Stale Nonce"
	case stun.CodeAddrFamilyNotSupported:
		return "Address Family not Supported"
	case stun.CodeWrongCredentials:
		return "Wrong Credentials"
	case stun.CodeUnsupportedTransProto:
		return "Unsupported Transport Protocol"
	case stun.CodePeerAddrFamilyMismatch:
		return "Peer Address Family Mismatch"
	case stun.CodeConnAlreadyExists:
		return "Connection Already Exists"
	case stun.CodeConnTimeoutOrFailure:
		return "Connection Timeout or Failure"
	case stun.CodeAllocQuotaReached:
		return "Allocation Quota Reached"
	case stun.CodeRoleConflict:
		return "Role Conflict"
	case stun.CodeServerError:
		return "Server Error"
	case stun.CodeInsufficientCapacity:
		return "Insufficient Capacity"
	}
	return "Error"
}
