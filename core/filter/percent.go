package filter

import (
	"math/rand/v2"

	"github.com/proxylab/proxylab/foundation/registry"
)

// Percent is Envoy's FractionalPercent: numerator out of HUNDRED (the
// default), TEN_THOUSAND or MILLION. Filters embed it in their configs
// (`percentage: {numerator: 5, denominator: HUNDRED}`).
type Percent struct {
	Numerator   uint32 `yaml:"numerator"`
	Denominator string `yaml:"denominator"`
}

// Of returns the percent's denominator (0 when the name is unknown).
func (p Percent) Of() uint32 {
	switch p.Denominator {
	case "", "HUNDRED":
		return 100
	case "TEN_THOUSAND":
		return 10_000
	case "MILLION":
		return 1_000_000
	}
	return 0
}

// Check validates the percent at path.
func (p Percent) Check(path string) []error {
	d := p.Of()
	if d == 0 {
		return []error{registry.Errorf(path+".denominator", "unknown denominator %q (HUNDRED, TEN_THOUSAND, MILLION)", p.Denominator)}
	}
	if p.Numerator > d {
		return []error{registry.Errorf(path+".numerator", "%d is over the denominator %d", p.Numerator, d)}
	}
	return nil
}

// Hit draws whether one request falls in the percent.
func (p Percent) Hit() bool {
	d := p.Of()
	switch {
	case p.Numerator >= d:
		return true
	case p.Numerator == 0:
		return false
	}
	return rand.Uint32N(d) < p.Numerator
}

// All is 100%.
var All = Percent{Numerator: 100}
