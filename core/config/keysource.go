package config

// keySourcer is implemented by engine certificate options that keep the
// private key somewhere other than key_file (a token, a key server).
type keySourcer interface{ KeySource() string }

// checkKeyFile checks an entry's key_file (at path): required and present,
// unless the engine's options hold the key elsewhere, when it must be
// absent.
func checkKeyFile(c *CertFiles, path string, add func(string, string, ...any)) {
	if ks, ok := c.EngineOptions.(keySourcer); ok && ks.KeySource() != "" {
		if c.KeyFile != "" {
			add(path, "set beside %s: the key lives there; remove key_file", ks.KeySource())
		}
		return
	}
	checkFile(c.KeyFile, path, add)
}
