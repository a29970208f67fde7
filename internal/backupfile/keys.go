package backupfile

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

const (
	// PBKDF2-HMAC-SHA256 for the dev key passphrase (stdlib; OWASP 2023
	// recommends >= 600,000 iterations for SHA-256).
	kdfName       = "pbkdf2-sha256"
	kdfIterations = 600_000

	// MinPassphrase is the shortest passphrase that may seal dev keys.
	MinPassphrase = 12
)

// ErrPassphrase is returned by SealedKeys.Open for a wrong passphrase (or
// a key section that was altered: AES-GCM cannot tell them apart).
var ErrPassphrase = errors.New("wrong passphrase (or the key section was altered)")

// SealedKeys is the DEV-ONLY soft key files, AES-256-GCM under a key
// derived from the passphrase, bound to the trust domain; the plaintext is
// JSON {path: PEM}.
type SealedKeys struct {
	KDF        string `json:"kdf"`
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// ReadPassphrase reads a passphrase file (--passphrase-file): its content
// without the trailing newline, refused when too short (CheckPassphrase).
func ReadPassphrase(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := []byte(strings.TrimRight(string(raw), "\r\n"))
	if err := CheckPassphrase(p); err != nil {
		return nil, err
	}
	return p, nil
}

// CheckPassphrase refuses a passphrase too short to seal keys with.
func CheckPassphrase(p []byte) error {
	if len(p) < MinPassphrase {
		return fmt.Errorf("the passphrase must be at least %d characters", MinPassphrase)
	}
	return nil
}

func sealAAD(td string) []byte { return []byte("tier0-backup-dev-keys-v1\x00" + td) }

// SealKeys encrypts keys (path -> PEM) under passphrase for trust domain td.
func SealKeys(keys map[string][]byte, passphrase []byte, td string) (*SealedKeys, error) {
	if err := CheckPassphrase(passphrase); err != nil {
		return nil, fmt.Errorf("backup: dev keys: %w", err)
	}
	plain, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	s := &SealedKeys{KDF: kdfName, Iterations: kdfIterations, Salt: make([]byte, 16)}
	if _, err := rand.Read(s.Salt); err != nil {
		return nil, err
	}
	aead, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	s.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(s.Nonce); err != nil {
		return nil, err
	}
	s.Ciphertext = aead.Seal(nil, s.Nonce, plain, sealAAD(td))
	return s, nil
}

// Open decrypts the keys; a wrong passphrase or trust domain is
// ErrPassphrase.
func (s *SealedKeys) Open(passphrase []byte, td string) (map[string][]byte, error) {
	if s.KDF != kdfName || s.Iterations < 100_000 || len(s.Salt) < 16 {
		return nil, fmt.Errorf("backup: dev keys: unsupported kdf %q (%d iterations)", s.KDF, s.Iterations)
	}
	aead, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("backup: dev keys: bad nonce: %w", ErrBadBackup)
	}
	plain, err := aead.Open(nil, s.Nonce, s.Ciphertext, sealAAD(td))
	if err != nil {
		return nil, fmt.Errorf("backup: dev keys: %w", ErrPassphrase)
	}
	defer clear(plain)
	var keys map[string][]byte
	if err := json.Unmarshal(plain, &keys); err != nil {
		return nil, fmt.Errorf("backup: dev keys: %w", err)
	}
	return keys, nil
}

func (s *SealedKeys) aead(passphrase []byte) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, string(passphrase), s.Salt, s.Iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("backup: kdf: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
