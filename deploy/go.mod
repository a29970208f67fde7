module github.com/tier0-ca/tier0/deploy

go 1.26.8

require (
	github.com/google/go-containerregistry v0.22.1
	github.com/tier0-ca/tier0 v0.0.0-00010101000000-000000000000
)

require (
	github.com/docker/docker-credential-helpers v0.9.5 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	golang.org/x/sync v0.24.0 // indirect
)

replace github.com/tier0-ca/tier0 => ../
