// Package docs is proxylab's documentation (the Markdown files here, linked
// from the README) and its worked examples (docs/examples). Its tests check
// that the links between the documents resolve.
package docs
