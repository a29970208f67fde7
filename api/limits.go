package api

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
)

// Every string field of every request, at any depth, is bounded before a
// handler runs (after authorization), so that no log line or error grows
// with a caller's input: DefaultFieldBytes unless fieldLimits names the
// field. The handlers and ca then apply the semantic rules (a SPIFFE ID
// parses, an agent name is one path segment, ...). A refusal is
// InvalidArgument naming the field and the limit, never echoing the value.
const (
	// DefaultFieldBytes bounds a request string field fieldLimits does
	// not name (agent and node names, URIs, addresses, ...).
	DefaultFieldBytes = 2048
	// maxHandleBytes bounds opaque handles: entry and root IDs, serials,
	// key IDs.
	maxHandleBytes = 128
)

// fieldLimits are the limits tighter than DefaultFieldBytes, by field.
var fieldLimits = tightLimits()

func tightLimits() map[protoreflect.FullName]int {
	limits := map[protoreflect.FullName]int{}
	set := func(m proto.Message, field string, limit int) {
		fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(field))
		if fd == nil { // a renamed field: caught by every test run
			panic("api: fieldLimits: no field " + field + " in " + string(m.ProtoReflect().Descriptor().FullName()))
		}
		limits[fd.FullName()] = limit
	}
	set(&tier0v1.AttestJoinTokenRequest{}, "token", maxTokenLen)
	set(&tier0v1.MintJWTSVIDRequest{}, "spiffe_id", ca.MaxIDBytes)
	set(&tier0v1.MintJWTSVIDRequest{}, "audience", ca.MaxAudienceBytes)
	set(&tier0v1.CreateEntryRequest{}, "spiffe_id", ca.MaxIDBytes)
	set(&tier0v1.CreateEntryRequest{}, "selectors", ca.MaxSelectorBytes)
	set(&tier0v1.CreateEntryRequest{}, "federates_with", ca.MaxTrustDomainBytes)
	set(&tier0v1.DeleteEntryRequest{}, "id", maxHandleBytes)
	set(&tier0v1.ActivateCARootRequest{}, "id", maxHandleBytes)
	set(&tier0v1.TaintKeyRequest{}, "id", maxHandleBytes)
	set(&tier0v1.TaintKeyRequest{}, "kind", maxHandleBytes)
	set(&tier0v1.ListRecordsRequest{}, "spiffe_id", ca.MaxIDBytes)
	set(&tier0v1.ListRecordsRequest{}, "agent_id", ca.MaxIDBytes)
	set(&tier0v1.ListRecordsRequest{}, "serial", maxHandleBytes)
	set(&tier0v1.ListRecordsRequest{}, "issuer_key_id", maxHandleBytes)
	set(&tier0v1.ListDecisionsRequest{}, "caller", ca.MaxIDBytes)
	set(&tier0v1.ListDecisionsRequest{}, "requested", ca.MaxIDBytes)
	set(&tier0v1.FederationRelationship{}, "trust_domain", ca.MaxTrustDomainBytes)
	set(&tier0v1.FederationRelationship{}, "endpoint_spiffe_id", ca.MaxIDBytes)
	set(&tier0v1.DeleteFederationRequest{}, "trust_domain", ca.MaxTrustDomainBytes)
	return limits
}

// fieldLimit is the byte limit of one string field.
func fieldLimit(fd protoreflect.FieldDescriptor) int {
	if n, ok := fieldLimits[fd.FullName()]; ok {
		return n
	}
	return DefaultFieldBytes
}

// fieldTooLong is a string field over its limit. Its name is assembled
// only when one is found (segments innermost first): checking a valid
// request builds no strings (it runs on every call and every batch item).
type fieldTooLong struct {
	segments []string
	n, limit int
}

func (f *fieldTooLong) err() error {
	name := make([]string, len(f.segments))
	for i, s := range f.segments {
		name[len(name)-1-i] = s
	}
	return fmt.Errorf("%w: %s is %d bytes, above the limit of %d bytes", errBadInput, strings.Join(name, "."), f.n, f.limit)
}

// checkFields returns the first string field of m (at any depth) over its
// limit, or nil.
func checkFields(m protoreflect.Message) *fieldTooLong {
	var bad *fieldTooLong
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap(): // none in the API today; bounded like lists if added
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if bad = checkValue(fd.MapValue(), mv); bad != nil {
					bad.segments = append(bad.segments, string(fd.Name())+"["+k.String()+"]")
				}
				return bad == nil
			})
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && bad == nil; i++ {
				if bad = checkValue(fd, l.Get(i)); bad != nil {
					bad.segments = append(bad.segments, fmt.Sprintf("%s[%d]", fd.Name(), i))
				}
			}
		default:
			if bad = checkValue(fd, v); bad != nil {
				bad.segments = append(bad.segments, string(fd.Name()))
			}
		}
		return bad == nil
	})
	return bad
}

func checkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) *fieldTooLong {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if n, limit := len(v.String()), fieldLimit(fd); n > limit {
			return &fieldTooLong{n: n, limit: limit}
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkFields(v.Message())
	}
	return nil
}

// checkRequest bounds the string fields of a request message.
func checkRequest(req any) error {
	if m, ok := req.(proto.Message); ok {
		if bad := checkFields(m.ProtoReflect()); bad != nil {
			return bad.err()
		}
	}
	return nil
}

// shortMethod is the method name of a full gRPC method ("/pkg.Svc/Name").
func shortMethod(full string) string {
	return full[strings.LastIndexByte(full, '/')+1:]
}

// unaryLimits refuses a request with an oversized string field.
func (s *Server) unaryLimits(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkRequest(req); err != nil {
		return nil, s.toStatus(ctx, shortMethod(info.FullMethod), err)
	}
	return handler(ctx, req)
}

// streamLimits applies unaryLimits to every message a stream receives.
func (s *Server) streamLimits(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &limitedStream{ServerStream: ss, s: s, method: shortMethod(info.FullMethod)})
}

type limitedStream struct {
	grpc.ServerStream
	s      *Server
	method string
}

func (l *limitedStream) RecvMsg(m any) error {
	if err := l.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := checkRequest(m); err != nil {
		return l.s.toStatus(l.Context(), l.method, err)
	}
	return nil
}
