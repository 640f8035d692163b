// Package servertest runs a real breachd gRPC server for the tests and
// benchmarks of its clients, as net/http/httptest does for HTTP: a Badger
// store in a directory the caller owns, the use cases, and the services with
// their limits and interceptors, assembled as cmd/breachd assembles them, on
// 127.0.0.1 with a port of the kernel's choosing. Nothing is mocked.
package servertest
