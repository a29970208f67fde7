package main

import "github.com/tier0-ca/tier0/internal/cliout"

// Output formats of -o/--output and the printers every command shares
// (internal/cliout). Every command takes its -o through outputFlag, so an
// unknown format is refused when the flags are parsed.
const (
	outTable = cliout.Table
	outText  = cliout.Text
	outJSON  = cliout.JSON
	outCSV   = cliout.CSV
)

var (
	outputFlag  = cliout.Flag
	printJSON   = cliout.PrintJSON
	printJSONOr = cliout.JSONOr
	printChange = cliout.Change
)
