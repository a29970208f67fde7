package auditchain

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"google.golang.org/grpc"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// Server is what Fetch asks: the records (intermediates) and the bundle
// (roots). *client.Client's Audit() and Agent() provide them.
type Server interface {
	ListRecords(ctx context.Context, in *tier0v1.ListRecordsRequest, opts ...grpc.CallOption) (*tier0v1.ListRecordsResponse, error)
	GetBundle(ctx context.Context, in *tier0v1.GetBundleRequest, opts ...grpc.CallOption) (*tier0v1.GetBundleResponse, error)
}

// maxIssuers bounds the recorded CA certificates read (one page).
const maxIssuers = 10000

// Fetch builds the chain of a recorded certificate from the server: the
// intermediates the log records (records of the trust domain's ID) and
// the bundle's roots.
func Fetch(ctx context.Context, s Server, leaf []byte) ([]Link, error) {
	b, err := s.GetBundle(ctx, &tier0v1.GetBundleRequest{})
	if err != nil {
		return nil, fmt.Errorf("auditchain: bundle: %w", err)
	}
	resp, err := s.ListRecords(ctx, &tier0v1.ListRecordsRequest{SpiffeId: "spiffe://" + b.GetTrustDomain(), Kind: "x509", Limit: maxIssuers})
	if err != nil {
		return nil, fmt.Errorf("auditchain: recorded issuers: %w", err)
	}
	var cands []Candidate
	for _, r := range resp.GetRecords() {
		cands = append(cands, Candidate{Seq: r.GetSeq(), DER: r.GetCertDer()})
	}
	return Build(leaf, cands, b.GetX509Authorities())
}

// Describe is a link as `tier0 audit show` prints it (JSON: the chain's
// entries, PEM included).
func Describe(chain []Link) []map[string]any {
	out := make([]map[string]any, len(chain))
	for i, l := range chain {
		role := "intermediate"
		switch {
		case i == 0:
			role = "leaf"
		case l.Root:
			role = "root (bundle)"
		}
		out[i] = map[string]any{"role": role, "seq": l.Seq, "subject": subject(l.Cert),
			"subject_key_id": hex.EncodeToString(l.Cert.SubjectKeyId), "authority_key_id": hex.EncodeToString(l.Cert.AuthorityKeyId),
			"pem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Cert.Raw}))}
	}
	return out
}

func subject(c *x509.Certificate) string {
	if len(c.URIs) == 1 && c.Subject.String() == "" {
		return c.URIs[0].String()
	}
	return c.Subject.String()
}
