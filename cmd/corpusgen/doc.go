// Command corpusgen writes a deterministic synthetic breach dump shaped like
// the Sega Pass dump (email,name,date_of_birth,encrypted_password).
package main
