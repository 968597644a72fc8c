// Package shimbin runs the shim binary protocol: resolving a runtime name
// to its binary, `shim start` (whose reply it decodes), `shim delete` and
// `shim -info`, with the argv, env and stdin stock passes. It touches
// nothing on disk itself; the shim it runs works in the bundle it is given.
package shimbin
