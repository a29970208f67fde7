package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func mintSVID(t *testing.T, e *testEnv, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	key := newP256(t)
	r, err := e.ca.MintFor(context.Background(), spiffeid.ID{}, id, makeCSR(t, key, []string{id.String()}), 0)
	if err != nil {
		t.Fatal(err)
	}
	certs := []*x509.Certificate{r.Cert}
	for _, der := range r.Chain[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}
}

// handshake runs a TLS handshake over net.Pipe and returns both errors. The
// server writes one byte after its handshake and the client reads it, so
// that a server-side rejection (which in TLS 1.3 happens after the client's
// handshake returned) reaches the client and neither side blocks on the
// unbuffered pipe.
func handshake(server, client *tls.Config) (version uint16, serverErr, clientErr error) {
	sc, cc := net.Pipe()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		sc.Close()
		done <- err
	}()
	c := tls.Client(cc, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		var b [1]byte
		_, clientErr = io.ReadFull(c, b[:])
	}
	version = c.ConnectionState().Version
	cc.Close()
	return version, <-done, clientErr
}

func TestMTLSHandshake(t *testing.T) {
	e := newEnv(t, nil)
	serverID, clientID := testWLID, testWLID2
	serverSVID, clientSVID := mintSVID(t, e, serverID), mintSVID(t, e, clientID)
	bundle := x509bundle.FromX509Authorities(testTD, []*x509.Certificate{e.pki.root})

	serverCfg := tlsconfig.MTLSServerConfig(serverSVID, bundle, tlsconfig.AuthorizeID(clientID))
	serverCfg.MinVersion = tls.VersionTLS13
	clientCfg := tlsconfig.MTLSClientConfig(clientSVID, bundle, tlsconfig.AuthorizeID(serverID))
	clientCfg.MinVersion = tls.VersionTLS13

	v, serr, cerr := handshake(serverCfg, clientCfg)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if v != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", v)
	}
	if _, ok := serverSVID.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Fatal("unexpected key type")
	}

	// Structured authorization: the client refuses a server with another ID.
	wrong := tlsconfig.MTLSClientConfig(clientSVID, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/webx")))
	wrong.MinVersion = tls.VersionTLS13
	if _, _, cerr := handshake(serverCfg, wrong); cerr == nil {
		t.Fatal("client accepted a server with an unauthorized SPIFFE ID")
	}

	// An SVID from an unrelated CA is refused by the server.
	other := newEnv(t, nil)
	stranger := tlsconfig.MTLSClientConfig(mintSVID(t, other, clientID), bundle, tlsconfig.AuthorizeID(serverID))
	stranger.MinVersion = tls.VersionTLS13
	_, serr, _ = handshake(serverCfg, stranger)
	var certErr x509.UnknownAuthorityError
	if serr == nil {
		t.Fatal("server accepted an SVID from another CA")
	} else if !errors.As(serr, &certErr) {
		t.Logf("server refused foreign SVID: %v", serr)
	}
}
