package operator

import (
	"context"
	"io"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v3"
)

// Command is `containerd recovery`, with its subcommands plan and report.
// It reads the root command's --config, --root, --state and --address
// (containerd's own flags, also accepted after the subcommand).
func Command() *cli.Command {
	jsonFlag := func() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "Print JSON instead of a table"} }
	return &cli.Command{
		Name:  "recovery",
		Usage: "Inspect shimkeeper's recovery: what the next start would do, what the last one did",
		Commands: []*cli.Command{
			{
				Name:  "plan",
				Usage: "Show what the next start of a stopped daemon would do with each bundle, and why (reads only)",
				Description: `Reads config.toml, the state and root dirs and the metadata database (read-only),
probes each shim with read-only task API calls, and prints per bundle the action
recovery would take. Nothing is written, removed or killed. The daemon must be
stopped: its metadata database is locked while it runs.`,
				Flags: []cli.Flag{jsonFlag()},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return Plan(ctx, cmd.Root().Writer, options(cmd))
				},
			},
			{
				Name:  "report",
				Usage: "Print the report of the last recovery (reads only)",
				Flags: []cli.Flag{jsonFlag()},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return Report(ctx, cmd.Root().Writer, options(cmd))
				},
			},
		},
	}
}

// Options are the command's inputs: containerd's own --config, --root,
// --state and --address (global flags, also accepted after the
// subcommand), and --json.
type Options struct {
	// ConfigPath is config.toml (DefaultConfigPath if empty); ConfigSet
	// says it was given, so that a missing file is an error rather than
	// "use the defaults" (as for the daemon).
	ConfigPath string
	ConfigSet  bool
	// Root, State and Address override the config, as the daemon's flags.
	Root, State, Address string
	JSON                 bool
}

func options(cmd *cli.Command) Options {
	return Options{
		ConfigPath: cmd.String("config"),
		ConfigSet:  cmd.IsSet("config"),
		Root:       cmd.String("root"),
		State:      cmd.String("state"),
		Address:    cmd.String("address"),
		JSON:       cmd.Bool("json"),
	}
}

// Plan prints what the next start of the daemon would do with each bundle.
func Plan(ctx context.Context, w io.Writer, o Options) error {
	ctx = quietLogs(ctx)
	d, err := loadDaemon(ctx, o)
	if err != nil {
		return lineError(err)
	}
	rs, err := plan(ctx, d)
	if err != nil {
		return lineError(err)
	}
	if o.JSON {
		return writeJSON(w, rs)
	}
	return writePlan(w, rs)
}

// Report prints the reports the last recovery wrote.
func Report(ctx context.Context, w io.Writer, o Options) error {
	ctx = quietLogs(ctx)
	d, err := loadDaemon(ctx, o)
	if err != nil {
		return lineError(err)
	}
	rs, err := reports(d)
	if err != nil {
		return lineError(err)
	}
	if o.JSON {
		return writeJSON(w, rs)
	}
	return writeReports(w, rs)
}

// quietLogs discards library logging (config migration notices, decoding
// warnings, probe debug lines): stdout is only the answer, stderr only the
// one-line error, whose message carries the cause.
func quietLogs(ctx context.Context) context.Context {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return log.WithLogger(ctx, logrus.NewEntry(l))
}

// lineError makes err's message one line (the daemon's main prints it
// after "containerd: "), keeping it for errors.Is.
func lineError(err error) error { return oneLineError{err} }

type oneLineError struct{ err error }

func (e oneLineError) Error() string { return oneLine(e.err.Error()) }
func (e oneLineError) Unwrap() error { return e.err }
