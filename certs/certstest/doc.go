// Package certstest makes real certificate authorities and certificates for
// tests: ECDSA P-256 keys, PEM files in a directory the test owns, server
// certificates for 127.0.0.1 and localhost, client certificates with a
// common name, DNS or URI SANs. Nothing here is for production.
package certstest
