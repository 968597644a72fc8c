// Package cleanup holds every operation of shimkeeper that removes state
// from disk.
//
// What it may touch: only paths strictly inside a confining directory that
// the caller names (a plugin's state or root dir, or one namespace below
// it). Every entry point checks the path against that directory after
// cleaning it and refuses anything that escapes it. Symlinks are removed as
// links and never followed. Deletes are crash-safe: a directory is first
// renamed to a dot-name in the same parent (which every scanner skips) and
// only then removed, and a dot-name left by a crash is finished by
// FinishPending on the next start.
//
// The package imports none of shimkeeper's other packages.
package cleanup
