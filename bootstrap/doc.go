// Package bootstrap reads and writes what a shim advertised at start: the
// `shim start` reply in every form stock accepts, and a bundle's
// bootstrap.json (or the address file of 1.x-era shims). Write is the only
// thing here that writes to disk: bootstrap.json, atomically.
package bootstrap
