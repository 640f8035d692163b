package dump

// SetBlockBytes sets the size of the blocks pr's lines are cut into, so
// that tests can put block edges anywhere.
func SetBlockBytes(pr *PasswordReader, n int) { pr.blockBytes = n }
