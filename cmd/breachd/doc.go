// Command breachd is the credential-exposure lookup daemon.
//
//	breachd serve  --data DIR [--addr 127.0.0.1:7355] [--tls-cert FILE --tls-key FILE [--client-ca FILE]] [--metrics-addr ADDR] [--config FILE]
//	breachd import (--data DIR | --addr ADDR) --manifest FILE DUMP
//	breachd keys   create|list|revoke --data DIR ...
//	breachd breach delete NAME | update --manifest FILE  (--data DIR | --addr ADDR)
//	breachd gc     --data DIR
//	breachd replication takeover --data DIR --publish URL | promote --data DIR
//	breachd config print [serve's flags]
package main
