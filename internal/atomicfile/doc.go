// Package atomicfile replaces files so that a crash, at any moment, leaves
// the old file or the new one, whole: the new contents go to a temporary
// file in the same directory, which is synced, renamed over the file, and
// then the directory is synced, so that the rename itself survives a power
// loss. Every file breachd replaces goes through it.
package atomicfile
