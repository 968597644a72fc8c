// Package layout owns shimkeeper's on-disk names and path rules: the
// plugin dirs below the daemon's root and state dirs, the files of a
// bundle, the report and boot record of a recovery pass, the shim socket
// dir and addresses, the dot-names that every scanner skips (interrupted
// removals, temp files), and the one atomic file writer.
//
// Everything but WriteFileAtomic is pure: names and paths computed from
// their inputs, nothing read or written. The package imports none of
// shimkeeper's other packages.
package layout
