package main

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/tier0-ca/tier0/internal/flagconfig"
	"github.com/tier0-ca/tier0/internal/nodeattest"
)

// registerAttestorFlags adds --attestor-NAME for each node attestor: its
// YAML configuration (in the config file a section under that key). An
// attestor without one is disabled.
func registerAttestorFlags(fl *pflag.FlagSet) map[string]*string {
	out := map[string]*string{}
	for _, name := range nodeattest.Names {
		flag := "attestor-" + strings.ReplaceAll(name, "_", "-")
		out[name] = fl.String(flag, "", "enable the "+name+" node attestor with this YAML configuration (in --config: a section under this key; README \"Node attestation\")")
		_ = fl.SetAnnotation(flag, flagconfig.SectionAnnotation, []string{"yes"})
	}
	return out
}

// attestorSections are the non-empty --attestor-NAME values.
func attestorSections(flags map[string]*string) map[string]string {
	out := map[string]string{}
	for name, v := range flags {
		if strings.TrimSpace(*v) != "" {
			out[name] = *v
		}
	}
	return out
}
