package main

import (
	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/flagconfig"
)

// envPrefix: `tier0 server --listen` is also TIER0_LISTEN.
const envPrefix = "TIER0_"

// serverConfigOptions: every flag of `tier0 server` (its own and
// --data-dir, --log-level) can come from TIER0_<FLAG> or --config FILE;
// TIER0_DATA is the deprecated name of TIER0_DATA_DIR.
var serverConfigOptions = flagconfig.Options{
	EnvPrefix:  envPrefix,
	FileFlag:   "config",
	EnvAliases: map[string]string{"TIER0_DATA": "data-dir"},
	Skip:       []string{"help"},
}

// withConfigFile adds --config to cmd and fills its flags that were not
// given on the command line from the environment and the file before it
// runs (precedence: flag > env > file > default). The sources are logged,
// the values of secret flags (store DSN, keys, PINs, tokens) never.
func withConfigFile(cmd *cobra.Command, g *globalFlags) {
	cmd.Flags().String("config", "", "YAML config file: flag names as keys (listen: 127.0.0.1:8443), lists as YAML lists; env TIER0_CONFIG. Every flag can also come from TIER0_<FLAG> (TIER0_DATA_DIR); precedence flag > env > file > default")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		srcs, err := flagconfig.Apply(cmd.Flags(), serverConfigOptions)
		if err != nil {
			return err
		}
		if err := g.resolveDataDir(); err != nil {
			return err
		}
		log := g.logger()
		log.Info("configuration", flagconfig.LogAttrs(cmd.Flags(), srcs)...)
		for _, s := range srcs {
			if s.Deprecated {
				log.Warn("deprecated environment variable", "name", s.Where, "use", flagconfig.EnvName(envPrefix, s.Flag))
			}
		}
		return nil
	}
}
