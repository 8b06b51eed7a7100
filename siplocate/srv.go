package siplocate

import (
	"cmp"
	"slices"

	"github.com/miekg/dns"
)

// maxSRVPerName bounds how many SRV records of one name are used; the rest
// are ignored (a hostile zone could list thousands, each costing lookups).
const maxSRVPerName = 32

// srvSet is the outcome of one SRV query.
type srvSet struct {
	records []*dns.SRV // ordered per RFC 2782, "." targets removed
	// unavailable: the only record had target "." — "the service is
	// decidedly not available at this domain" (RFC 2782).
	unavailable bool
}

// toSRVSet keeps the SRV records among rrs and orders them.
func toSRVSet(rrs []dns.RR, intn func(n uint32) uint32) srvSet {
	var recs []*dns.SRV
	dot := 0
	for _, rr := range rrs {
		s, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		if s.Target == "." || s.Target == "" {
			dot++
			continue
		}
		if len(recs) < maxSRVPerName {
			recs = append(recs, s)
		}
	}
	if len(recs) == 0 {
		return srvSet{unavailable: dot > 0}
	}
	return srvSet{records: orderSRV(recs, intn)}
}

// orderSRV orders records by RFC 2782: ascending priority, and within one
// priority by weighted random selection, where a record's chance to come
// next is its share of the remaining weight and weight-0 records come
// first in the running sum (so they are picked only when the draw is 0).
// intn(n) returns a uniform random number in [0, n).
func orderSRV(recs []*dns.SRV, intn func(n uint32) uint32) []*dns.SRV {
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b *dns.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]*dns.SRV, 0, len(recs))
	for len(recs) > 0 {
		n := 1
		for n < len(recs) && recs[n].Priority == recs[0].Priority {
			n++
		}
		group := recs[:n]
		recs = recs[n:]
		// "arrange all SRV RRs (that have not been ordered yet) in any
		// order, except that all those with weight 0 are placed at the
		// beginning of the list". Shuffling first spreads the load over
		// weight-0 records, which the running sum alone never would.
		for i := len(group) - 1; i > 0; i-- {
			j := int(intn(uint32(i + 1)))
			group[i], group[j] = group[j], group[i]
		}
		slices.SortStableFunc(group, func(a, b *dns.SRV) int {
			return cmp.Compare(min(a.Weight, 1), min(b.Weight, 1))
		})
		for len(group) > 0 {
			var sum uint32
			for _, s := range group {
				sum += uint32(s.Weight)
			}
			// "choose a uniform random number between 0 and the sum ...
			// (inclusive)", then the first record whose running sum is
			// greater than or equal to it.
			draw := intn(sum + 1)
			var run uint32
			pick := len(group) - 1
			for i, s := range group {
				run += uint32(s.Weight)
				if run >= draw {
					pick = i
					break
				}
			}
			out = append(out, group[pick])
			group = slices.Delete(group, pick, pick+1)
		}
	}
	return out
}
