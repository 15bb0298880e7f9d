package database

import "io/fs"

// Sub returns the subtree of an embedded FS, panicking on a bad path: paths are constants.
func Sub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
