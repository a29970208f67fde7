//go:build deps

// Package deps pins dependencies during bootstrap.
package deps

import (
	_ "cloud.google.com/go/kms/apiv1"
	_ "github.com/aws/aws-sdk-go-v2/config"
	_ "github.com/aws/aws-sdk-go-v2/service/kms"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-wal"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/miekg/pkcs11"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/spiffe/go-spiffe/v2/spiffeid"
	_ "golang.org/x/time/rate"
	_ "google.golang.org/grpc"
	_ "google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite"
)
