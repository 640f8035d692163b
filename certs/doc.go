// Package certs loads the daemon's TLS certificate, key and optional client
// CA from files and keeps them current: Reload swaps in new ones atomically
// (a failed reload keeps the old), Watch calls it when the files' directories
// change (Kubernetes replaces a secret by swapping a symlink, so the
// directory is watched, not the file), and the daemon also calls it on
// SIGHUP. Connections already open keep their session; new handshakes get
// the new certificate. TLS 1.2 is the minimum.
package certs
