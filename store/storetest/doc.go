// Package storetest is the conformance suite every corpus backend must pass,
// in the manner of SpiceDB's datastore tests: Run takes a constructor and
// checks, against the backend as the use cases see it (service.Store), the
// invariants breachd promises whatever holds the data: exact answers (no
// false negative, no false positive), a breach visible all at once, corpus
// versions that only grow, an interrupted import that changes nothing, no
// false negative while an import runs, and a reopened backend that keeps
// everything. History runs a seeded random sequence of changes and checks
// every step, and every answer read during one, against a model (Steps
// records the seed and the steps for a failure). It imports no backend;
// package store runs it over Badger.
package storetest
