package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports outside Linux's ephemeral range (32768-60999 by default): a port
// picked by listening on :0 and closing can be taken by any outgoing
// connection's local port before the process it is meant for binds it.
const (
	portLow  = 20000
	portHigh = 32000
)

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreeAddr returns a 127.0.0.1 address that was free a moment ago, from a
// range outgoing connections do not use, never the same twice in a process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := portLow + rand.IntN(portHigh-portLow)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return l.Addr().String()
	}
	t.Fatal("testenv: no free port in 20000-32000")
	return ""
}
