// Command breachctl is the command-line client of breachd.
//
//	breachctl check    [--addr ADDR] EMAIL...
//	breachctl check    [--addr ADDR] --file PATH [--out PATH] [--format csv|jsonl] [--resume] ...
//	breachctl breaches [--addr ADDR]
//	breachctl hash     EMAIL
//
// Exit codes: 0 success; 1 connection or server error; 2 usage error;
// 3 exposed accounts found and --fail-on-exposed was given; 4 the input
// was misread (a CSV header without the email column; every row invalid,
// more than --max-invalid of them, or any with --fail-on-invalid).
package main
