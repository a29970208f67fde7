package nodeattest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrUnavailable: the trust anchors could not be fetched (a JWKS URL did
// not answer). api maps it to Unavailable: the agent retries.
var ErrUnavailable = errors.New("nodeattest: trust anchors unavailable")

// jwtAlgs are the signature algorithms accepted on tokens (Kubernetes and
// Google sign with RS256; ES256 for other issuers). "none" and HMAC never.
var jwtAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.PS256}

// jwksRefresh is the least time between two reloads of a JWKS caused by a
// token with an unknown key ID.
const jwksRefresh = 30 * time.Second

// jwks is a JSON Web Key Set from a file or an HTTPS URL, reloaded when a
// token names a key it does not hold (key rotation), at most every
// jwksRefresh.
type jwks struct {
	file, url string
	client    *http.Client
	clock     func() time.Time

	mu     sync.Mutex
	set    *jose.JSONWebKeySet
	loaded time.Time
}

func newJWKS(file, url string, clock func() time.Time) (*jwks, error) {
	if (file == "") == (url == "") {
		return nil, errors.New("config: exactly one of jwks_file and jwks_url is required")
	}
	j := &jwks{file: file, url: url, clock: clock, client: &http.Client{Timeout: 10 * time.Second}}
	if file != "" { // a file must be readable at startup
		set, err := j.fetch(context.Background())
		if err != nil {
			return nil, err
		}
		j.set, j.loaded = set, clock()
	}
	return j, nil
}

func (j *jwks) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	var raw []byte
	var err error
	if j.file != "" {
		raw, err = readFileLimited(j.file)
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
	} else {
		req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
		if rerr != nil {
			return nil, fmt.Errorf("jwks_url: %w", rerr)
		}
		resp, rerr := j.client.Do(req)
		if rerr != nil {
			return nil, fmt.Errorf("%w: jwks_url %s: %v", ErrUnavailable, j.url, rerr)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%w: jwks_url %s: HTTP %d", ErrUnavailable, j.url, resp.StatusCode)
		}
		raw, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("%w: jwks_url %s: %v", ErrUnavailable, j.url, err)
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("jwks: no keys")
	}
	return &set, nil
}

// key returns the public key kid (reloading the set once if unknown).
func (j *jwks) key(ctx context.Context, kid string) (any, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	find := func() any {
		if j.set == nil {
			return nil
		}
		for _, k := range j.set.Keys {
			if k.KeyID == kid && k.Valid() && k.IsPublic() {
				return k.Key
			}
		}
		return nil
	}
	if k := find(); k != nil {
		return k, nil
	}
	if j.set != nil && j.clock().Sub(j.loaded) < jwksRefresh {
		return nil, denied("token signed by unknown key %q", kid)
	}
	set, err := j.fetch(ctx)
	if err != nil {
		if j.set == nil || errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	j.set, j.loaded = set, j.clock()
	if k := find(); k != nil {
		return k, nil
	}
	return nil, denied("token signed by unknown key %q", kid)
}

// verifyJWT checks raw's signature against keys and its time claims at
// now, and that it names audience and (if set) issuer; custom receives
// the payload. Expired or not-yet-valid tokens are denied.
func verifyJWT(ctx context.Context, keys *jwks, raw, issuer, audience string, now time.Time, custom any) (jwt.Claims, error) {
	tok, err := jwt.ParseSigned(raw, jwtAlgs)
	if err != nil {
		return jwt.Claims{}, bad("token: %v", err)
	}
	if len(tok.Headers) != 1 {
		return jwt.Claims{}, bad("token: want one signature")
	}
	key, err := keys.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return jwt.Claims{}, err
	}
	var c jwt.Claims
	if err := tok.Claims(key, &c, custom); err != nil {
		return jwt.Claims{}, denied("token signature: %v", err)
	}
	if c.Expiry == nil {
		return jwt.Claims{}, denied("token has no expiry")
	}
	exp := jwt.Expected{Time: now, AnyAudience: jwt.Audience{audience}}
	if issuer != "" {
		exp.Issuer = issuer
	}
	if err := c.ValidateWithLeeway(exp, 30*time.Second); err != nil {
		return jwt.Claims{}, denied("token: %v", err)
	}
	return c, nil
}

func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return nil, err
	}
	return raw, nil
}
