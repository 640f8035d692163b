// Package interrupt gives the commands their context: the first Ctrl-C
// (SIGINT) or SIGTERM cancels it, and a second one ends the process at
// once, as most command-line tools do, for when a command is slow to stop.
// Ending at once is safe: a store recovers from it as from a crash (the
// crash harness, docs/RELIABILITY.md). OpenFile opens a file as
// os.OpenFile does, except that the open of a named pipe, which waits for
// its other end, ends with the context too.
package interrupt
