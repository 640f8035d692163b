// Package service holds breachd's use cases: check one digest, check a batch,
// list and get breaches, import, delete and correct a breach. They speak the root package's
// vocabulary (digests, catalogue entries, exposures, import counts) and
// return its kinds of error; no protobuf, HTTP or Badger type crosses this
// line. Rules that hold whatever the transport (batch limits, breach name
// and field limits, catalogue pagination, refusing an empty import) live here
// once; the gRPC services in package server, and any later face, are thin
// adapters over a *Service. Storage is the Store interface declared here and
// implemented by package store. Two rules of a daemon's life are the
// service's too: a corpus still opening answers UNAVAILABLE (New with a nil
// Store, then Open), and a read replica refuses every change (WithReadOnly).
package service
