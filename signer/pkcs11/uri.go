package pkcs11

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// URI is the part of an RFC 7512 PKCS#11 URI that tier0 understands.
//
//	pkcs11:token=tier0;object=ca-key;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/tier0/pin
type URI struct {
	Token  string // token label
	Serial string // token serial number
	SlotID *uint  // slot-id
	Object string // CKA_LABEL of the key
	ID     []byte // CKA_ID of the key (nil: not given)

	ModulePath string // module-path: the PKCS#11 shared library
	PinSource  string // pin-source: file:/path, /path or env:VAR
	// SessionCopy (x-session-copy, default true): sign with a session-object
	// copy of the key when the module allows it (see sessionkey.go).
	SessionCopy bool
}

// ParseURI parses and validates a pkcs11: URI. It rejects pin-value: a PIN
// is never accepted inline.
func ParseURI(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, errors.New("signer/pkcs11: URI must start with \"pkcs11:\"")
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{SessionCopy: true}
	seen := map[string]bool{}
	for attr := range strings.SplitSeq(path, ";") {
		if attr == "" {
			continue
		}
		k, v, err := splitAttr(attr)
		if err != nil {
			return nil, err
		}
		if seen[k] {
			return nil, fmt.Errorf("signer/pkcs11: URI attribute %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "token":
			u.Token = v
		case "serial":
			u.Serial = v
		case "object":
			u.Object = v
		case "id":
			u.ID = []byte(v)
		case "slot-id":
			n, err := strconv.ParseUint(v, 10, 0)
			if err != nil {
				return nil, fmt.Errorf("signer/pkcs11: slot-id %q is not a number", v)
			}
			id := uint(n)
			u.SlotID = &id
		case "type":
			if v != "private" {
				return nil, fmt.Errorf("signer/pkcs11: type=%s: a signing key URI must name a private key (type=private)", v)
			}
		case "manufacturer", "model", "library-manufacturer", "library-description", "library-version", "slot-manufacturer", "slot-description":
			// Informational; tier0 selects tokens by token, serial or slot-id.
		case "pin-value", "pin-source", "module-path", "module-name":
			return nil, fmt.Errorf("signer/pkcs11: %s is a query attribute (after '?'), not a path attribute", k)
		default:
			return nil, fmt.Errorf("signer/pkcs11: unknown URI path attribute %q", k)
		}
	}
	for attr := range strings.SplitSeq(query, "&") {
		if attr == "" {
			continue
		}
		k, v, err := splitAttr(attr)
		if err != nil {
			return nil, err
		}
		switch k {
		case "module-path":
			u.ModulePath = v
		case "pin-source":
			u.PinSource = v
		case "x-session-copy":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("signer/pkcs11: x-session-copy=%s: want true or false", v)
			}
			u.SessionCopy = b
		case "pin-value":
			return nil, errors.New("signer/pkcs11: pin-value is not accepted: never put a PIN in a URI; use pin-source=file:/path or pin-source=env:VAR")
		default:
			return nil, fmt.Errorf("signer/pkcs11: unknown URI query attribute %q", k)
		}
	}
	switch {
	case u.ModulePath == "":
		return nil, errors.New("signer/pkcs11: URI needs module-path=/path/to/module.so")
	case u.Token == "" && u.Serial == "" && u.SlotID == nil:
		return nil, errors.New("signer/pkcs11: URI needs token=, serial= or slot-id= to select a token")
	case u.Object == "" && u.ID == nil:
		return nil, errors.New("signer/pkcs11: URI needs object= or id= to select a key")
	case u.PinSource == "":
		return nil, errors.New("signer/pkcs11: URI needs pin-source=file:/path or pin-source=env:VAR")
	}
	return u, nil
}

// knownAttrs are the RFC 7512 attribute names (and tier0's own) that an
// error may echo.
var knownAttrs = map[string]bool{
	"token": true, "serial": true, "slot-id": true, "object": true, "id": true, "type": true,
	"manufacturer": true, "model": true, "library-manufacturer": true, "library-description": true,
	"library-version": true, "slot-manufacturer": true, "slot-description": true,
	"pin-value": true, "pin-source": true, "module-path": true, "module-name": true, "x-session-copy": true,
}

func splitAttr(attr string) (k, v string, err error) {
	k, raw, ok := strings.Cut(attr, "=")
	if !ok || k == "" {
		// Name it only when it is an attribute name: a malformed attribute
		// may hold a PIN or passphrase pasted in the wrong place.
		if ok || !knownAttrs[attr] {
			return "", "", errors.New("signer/pkcs11: malformed URI attribute (want name=value; not shown: it may hold a secret)")
		}
		return "", "", fmt.Errorf("signer/pkcs11: malformed URI attribute %q (want name=value)", attr)
	}
	v, err = url.PathUnescape(raw)
	if err != nil {
		return "", "", fmt.Errorf("signer/pkcs11: URI attribute %s: bad percent-encoding", k)
	}
	return k, v, nil
}

// String returns the URI without its query (no module path or PIN source):
// a stable key identifier.
func (u *URI) String() string {
	var parts []string
	if u.Token != "" {
		parts = append(parts, "token="+escape([]byte(u.Token), false))
	}
	if u.Serial != "" {
		parts = append(parts, "serial="+escape([]byte(u.Serial), false))
	}
	if u.SlotID != nil {
		parts = append(parts, "slot-id="+strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	if u.Object != "" {
		parts = append(parts, "object="+escape([]byte(u.Object), false))
	}
	if u.ID != nil {
		parts = append(parts, "id="+escape(u.ID, true))
	}
	return "pkcs11:" + strings.Join(parts, ";")
}

func escape(b []byte, all bool) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		if !all && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

// readPIN resolves a pin-source. A PIN file must have mode 0600 or 0400.
// Errors name the source, never the PIN.
func readPIN(source string) (string, error) {
	if name, ok := strings.CutPrefix(source, "env:"); ok {
		pin := os.Getenv(name)
		if pin == "" {
			return "", fmt.Errorf("signer/pkcs11: pin-source env:%s: variable is unset or empty", name)
		}
		return pin, nil
	}
	path := source
	if p, ok := strings.CutPrefix(source, "file:"); ok {
		u, err := url.Parse(source)
		if err != nil || (u.Host != "" && u.Host != "localhost") {
			return "", fmt.Errorf("signer/pkcs11: pin-source %q: want file:/absolute/path", source)
		}
		path = p
		if u.Path != "" {
			path = u.Path
		}
	}
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("signer/pkcs11: pin-source %q: want file:/absolute/path or env:VAR", source)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("signer/pkcs11: pin-source: %w", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 && perm != 0o400 {
		return "", fmt.Errorf("signer/pkcs11: pin-source file %s has mode %04o; it must be 0600 or 0400 (chmod 600 %s)", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("signer/pkcs11: pin-source: %w", err)
	}
	pin := strings.TrimRight(string(data), "\r\n")
	if pin == "" {
		return "", fmt.Errorf("signer/pkcs11: pin-source %s: file is empty", path)
	}
	return pin, nil
}
