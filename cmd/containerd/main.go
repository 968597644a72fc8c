// Command containerd is stock containerd v2.4.2 with its runtime v2 shim
// manager, task runtime and "shim" sandbox controller replaced by shimkeeper,
// plus `containerd recovery plan|report`.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"

	"github.com/shimkeeper/shimkeeper/operator"
	_ "github.com/shimkeeper/shimkeeper/plugin"
)

func main() {
	profileStart()
	app := command.App()
	app.Commands = append(app.Commands, operator.Command())
	if err := app.Run(context.Background(), os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "containerd:", err)
		os.Exit(1)
	}
}
