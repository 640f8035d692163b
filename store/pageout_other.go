//go:build !linux

package store

import "errors"

var errNoPageout = errors.New("paging out table files is implemented on Linux only")

func pageOutTables(string) error { return errNoPageout }
