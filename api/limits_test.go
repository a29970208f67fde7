package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/testenv"
)

// stringField is the path to one string field of a request message.
type stringField struct {
	path []protoreflect.FieldDescriptor
}

func (f stringField) name() string {
	var parts []string
	for _, fd := range f.path {
		parts = append(parts, string(fd.Name()))
	}
	return strings.Join(parts, ".")
}

// stringFields lists every string field of md, nested messages included.
func stringFields(md protoreflect.MessageDescriptor, prefix []protoreflect.FieldDescriptor) []stringField {
	var out []stringField
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		path := append(append([]protoreflect.FieldDescriptor{}, prefix...), fd)
		switch {
		case fd.IsMap():
		case fd.Kind() == protoreflect.StringKind:
			out = append(out, stringField{path: path})
		case fd.Kind() == protoreflect.MessageKind && len(prefix) < 3:
			out = append(out, stringFields(fd.Message(), path)...)
		}
	}
	return out
}

// set sets the field at f (the first element of a list) to v in m.
func (f stringField) set(m protoreflect.Message, v string) {
	for _, fd := range f.path[:len(f.path)-1] {
		if fd.IsList() {
			l := m.Mutable(fd).List()
			l.Append(l.NewElement())
			m = l.Get(0).Message()
			continue
		}
		m = m.Mutable(fd).Message()
	}
	last := f.path[len(f.path)-1]
	if last.IsList() {
		m.Mutable(last).List().Append(protoreflect.ValueOfString(v))
		return
	}
	m.Set(last, protoreflect.ValueOfString(v))
}

func (f stringField) display() string {
	var b strings.Builder
	for i, fd := range f.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(fd.Name()))
		if fd.IsList() {
			b.WriteString("[0]")
		}
	}
	return b.String()
}

// TestEveryRequestStringIsBounded sends, for every string field of every
// request of every service the server registers (nested fields included),
// a value one byte over the field's limit: each is InvalidArgument naming
// the field and the limit, without echoing the value. A value at the limit
// passes the bound (the handler may still refuse it on its own rules).
func TestEveryRequestStringIsBounded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	agentID, _ := roles.AgentID(testTD, "a1")
	bootstrap, err := client.New(ctx, client.Config{Addrs: []string{f.addr}, TrustDomain: testTD, Bundle: f.bundle, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bootstrap.Close() })
	conns := map[string]*client.Client{
		"tier0.v1.Bootstrap": bootstrap,
		"tier0.v1.Agent":     f.clientAs(t, agentID),
	}
	admin := f.clientAs(t, roles.AdminID(testTD))
	checked := 0
	for svcName, info := range f.srv.grpc.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svcName))
		if err != nil {
			t.Fatalf("service %s: %v", svcName, err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		conn := conns[svcName]
		if conn == nil {
			conn = admin
		}
		for _, mi := range info.Methods {
			md := sd.Methods().ByName(protoreflect.Name(mi.Name))
			full := "/" + svcName + "/" + mi.Name
			for _, sf := range stringFields(md.Input(), nil) {
				limit := fieldLimit(sf.path[len(sf.path)-1])
				// At the limit: the bound lets it through.
				ok := dynamicpb.NewMessage(md.Input())
				sf.set(ok, strings.Repeat("a", limit))
				if err := checkRequest(ok); err != nil {
					t.Errorf("%s %s at its limit %d: %v", full, sf.name(), limit, err)
				}
				req := dynamicpb.NewMessage(md.Input())
				sf.set(req, strings.Repeat("a", limit+1))
				err := invoke(ctx, conn, full, mi, req, dynamicpb.NewMessage(md.Output()))
				want := fmt.Sprintf("invalid argument: %s is %d bytes, above the limit of %d bytes", sf.display(), limit+1, limit)
				if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
					t.Errorf("%s %s over the limit: got %v\nwant InvalidArgument %q", full, sf.name(), err, want)
				}
				checked++
			}
		}
	}
	if checked < 25 { // 28 when written
		t.Fatalf("only %d string fields checked: the walk is broken", checked)
	}
}

// invoke calls a unary or server-streaming method with a dynamic message.
func invoke(ctx context.Context, c *client.Client, method string, mi grpc.MethodInfo, req, resp proto.Message) error {
	if !mi.IsServerStream && !mi.IsClientStream {
		return c.Invoke(ctx, method, req, resp)
	}
	st, err := c.NewStream(ctx, &grpc.StreamDesc{ServerStreams: mi.IsServerStream, ClientStreams: mi.IsClientStream}, method)
	if err != nil {
		return err
	}
	if err := st.SendMsg(req); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	return st.RecvMsg(resp)
}

// TestSemanticLimitsThroughAPI: limits that the field bound alone does not
// give (an agent name whose SPIFFE ID would exceed 2,048 bytes, a CSR URI
// SAN over it) and the 1 MiB JWT audience of the report: each refused with
// InvalidArgument naming the limit; neither the answer nor the log holds
// the oversized value.
func TestSemanticLimitsThroughAPI(t *testing.T) {
	logs := &testenv.Buffer{}
	f := newFixture(t, func(c *Config) {
		iss := c.Issuer.(*ca.CA)
		k, err := ca.NewJWTKey(time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := iss.SetJWTKey(k); err != nil {
			t.Fatal(err)
		}
		c.JWT = iss
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := context.Background()
	admin := f.clientAs(t, roles.AdminID(testTD)).Admin()
	agentID, _ := roles.AgentID(testTD, "a1")
	agent := f.clientAs(t, agentID).Agent()
	long := strings.Repeat("n", 2040) // under the field bound, over the ID limit once prefixed
	maxPath := strings.Repeat("p", ca.MaxIDBytes-len("spiffe://example.org/"))

	_, jwtErr := agent.MintJWTSVID(ctx, &tier0v1.MintJWTSVIDRequest{SpiffeId: "spiffe://example.org/w", Audience: []string{strings.Repeat("x", 1<<20)}})
	_, entryErr := admin.CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: long, SpiffeId: "spiffe://example.org/w", Selectors: []string{"unix:uid:1"}})
	_, nodeErr := admin.CreateJoinToken(ctx, &tier0v1.CreateJoinTokenRequest{Node: long})
	_, agentTokErr := admin.CreateJoinToken(ctx, &tier0v1.CreateJoinTokenRequest{Agent: long})
	_, selErr := admin.CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: "a1", SpiffeId: "spiffe://example.org/w", Selectors: []string{"unix:path:/" + strings.Repeat("s", ca.MaxSelectorBytes)}})
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"jwt audience 1 MiB", jwtErr, "invalid argument: audience[0] is 1048576 bytes, above the limit of 256 bytes"},
		{"entry agent name", entryErr, "limit of 2048 bytes"},
		{"node token name", nodeErr, "limit of 2048 bytes"},
		{"agent token name", agentTokErr, "limit of 2048 bytes"},
		{"selector", selErr, "invalid argument: selectors[0] is 1035 bytes, above the limit of 1024 bytes"},
	}
	for _, c := range cases {
		msg := status.Convert(c.err).Message()
		if status.Code(c.err) != codes.InvalidArgument || !strings.Contains(msg, c.want) || len(msg) > 300 {
			t.Errorf("%s: got %v (%d bytes), want InvalidArgument containing %q", c.name, status.Code(c.err), len(msg), c.want)
		}
	}

	// An entry at exactly 2,048 bytes is fine; a CSR one byte over is an
	// InvalidArgument item.
	atLimit := "spiffe://example.org/" + maxPath
	if _, err := admin.CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: "a1", SpiffeId: atLimit, Selectors: []string{"unix:uid:1"}}); err != nil {
		t.Fatalf("entry with a 2048-byte spiffe id: %v", err)
	}
	over, _ := url.Parse(atLimit + "q")
	csr, _, err := client.NewCSR(spiffeid.RequireFromString(over.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := agent.MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr}}})
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetResults()[0].GetError(); codes.Code(e.GetCode()) != codes.InvalidArgument ||
		!strings.Contains(e.GetMessage(), "spiffe id of 2049 bytes exceeds the limit of 2048 bytes") {
		t.Errorf("csr with a 2049-byte URI SAN: %v", e)
	}
	if out := logs.String(); strings.Contains(out, strings.Repeat("x", 200)) || strings.Contains(out, strings.Repeat("n", 200)) {
		t.Errorf("an oversized value reached the log (%d bytes of log)", len(out))
	}
}
