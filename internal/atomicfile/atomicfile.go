package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
)

// File is the replacement of a file being written. Until Commit the file
// it replaces is untouched; Abort drops it.
type File struct {
	*os.File
	path        string
	afterRename func()
	done        bool
}

// Option changes how a File commits.
type Option func(*File)

// AfterRename calls fn between the rename and the directory's sync (a
// crash harness kills itself there).
func AfterRename(fn func()) Option { return func(f *File) { f.afterRename = fn } }

// Create starts the replacement of path, with permissions perm: a
// temporary file named path + ".tmp" and a random suffix, which a crash
// may leave behind (callers remove such leftovers when they start).
func Create(path string, perm os.FileMode, opts ...Option) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	f := &File{File: tmp, path: path}
	for _, o := range opts {
		o(f)
	}
	return f, nil
}

// Commit syncs and closes the temporary file, renames it over the file it
// replaces, and syncs the directory. After an error the old file is
// intact (unless the error is the directory's sync: then the new one is in
// place but may not survive a power loss).
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: committed or aborted already")
	}
	f.done = true
	err := f.File.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.File.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.File.Name())
		return err
	}
	if f.afterRename != nil {
		f.afterRename()
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort drops the replacement; after Commit it does nothing.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// WriteFile replaces path with data, as Create and Commit do.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write replaces path with what write writes, as Create and Commit do; an
// error from write leaves the old file.
func Write(path string, perm os.FileMode, write func(w io.Writer) error, opts ...Option) error {
	f, err := Create(path, perm, opts...)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// SyncDir syncs a directory, making the renames and creations in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
