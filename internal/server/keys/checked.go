package keys

import (
	"crypto"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/signer"
)

// checkedSigner is the root key as ca sees it. For KMS keys it verifies
// every signature before it is used, so that a KMS returning a bad
// signature is a clear, counted error (crypto/x509 would also refuse it,
// uncounted). PKCS#11 and soft keys are local: x509's own check suffices.
type checkedSigner struct {
	signer.Signer
	backend string
	verify  bool
	bad     *prometheus.CounterVec
}

func (c *checkedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := c.Signer.Sign(r, digest, opts) // counted in tier0_signer_errors_total
	if err != nil {
		return nil, fmt.Errorf("keys: CA key %s: %w", c.KeyID(), err)
	}
	if c.verify {
		if err := signer.Verify(c.Public(), digest, sig, opts); err != nil {
			c.bad.WithLabelValues(c.backend).Inc()
			return nil, fmt.Errorf("keys: CA key %s returned a signature that does not verify (KMS fault; nothing was issued): %w", c.KeyID(), err)
		}
	}
	return sig, nil
}
