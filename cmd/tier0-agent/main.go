// Command tier0-agent is the tier0 identity agent: it exchanges a join token
// for an agent SVID, keeps that SVID fresh, and fetches workload SVIDs for
// the registration entries granted to it.
//
//	tier0-agent bootstrap --server ADDR[,ADDR...] --bundle FILE --token TOKEN [--data-dir DIR]
//	tier0-agent fetch --out DIR [--ttl 30m]
//	tier0-agent renew
//	tier0-agent run
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/internal/version"
)

const (
	dataDirEnv     = "TIER0_AGENT_DATA"
	tokenEnv       = "TIER0_JOIN_TOKEN" //nolint:gosec // G101: the name of an env var, not a credential
	defaultDataDir = "./tier0-agent-data"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tier0-agent:", describe(err))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cmd := newRootCmd(&env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now})
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// env is everything a command may take from its process, so tests can
// substitute it.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	dataDir  string
	servers  []string
	logLevel string
}

func (e *env) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(e.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
}

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "tier0-agent",
		Short:         "tier0 identity agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	version.SetOn(root)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	defDir := defaultDataDir
	if v := e.getenv(dataDirEnv); v != "" {
		defDir = v
	}
	pf := root.PersistentFlags()
	pf.StringVar(&e.dataDir, "data-dir", defDir, "agent data directory (env "+dataDirEnv+")")
	pf.StringSliceVar(&e.servers, "server", nil, "tier0 server addresses host:port, comma separated (default: from DIR/agent/config.json, else 127.0.0.1:8443)")
	pf.StringVar(&e.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newBootstrapCmd(e), newFetchCmd(e), newRenewCmd(e), newRunCmd(e))
	return root
}

// describe renders err for a human: a gRPC status inside it is shown as
// "permission denied: <message>" instead of "rpc error: code = ... desc = ...".
func describe(err error) string {
	msg := err.Error()
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		raw := st.Err().Error()
		human := codeText(st.Code().String()) + ": " + st.Message()
		if strings.Contains(msg, raw) {
			return strings.Replace(msg, raw, human, 1)
		}
		return human
	}
	return msg
}

// codeText turns "PermissionDenied" into "permission denied".
func codeText(code string) string {
	var b strings.Builder
	for i, r := range code {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte(' ')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
