package demo

// Scenarios returns every scenario `isthmus demo` runs, in order:
//
//	1   ua6 offers, ua4 answers, through the isthmus relay (ICE)
//	2   legacy4 offers plain IPv4, ua6 answers with its relayed IPv4 address
//	3   ua4 offers, ua6 answers keeping the offer's network type
//	4   two dual-stack agents: direct IPv6 host pair, no relay
//	5.1 scenario 1 with coturn as the relay
//	5.2 scenario 2 with coturn as the relay
func Scenarios() []Scenario {
	return []Scenario{
		{
			ID: "1", Title: "ua6 offers, ua4 answers (ICE via relay)", Relay: RelayIsthmus,
			Offerer: Side{HostUA6, RoleOffer}, Answerer: Side{HostUA4, RoleAnswer},
			Expect: expectIPv6OfferToIPv4,
		},
		{
			ID: "2", Title: "legacy4 offers plain IPv4, ua6 answers", Relay: RelayIsthmus,
			Offerer: Side{HostLegacy4, RoleLegacyOffer}, Answerer: Side{HostUA6, RoleAnswer},
			Expect: expectLegacyToIPv6,
		},
		{
			ID: "3", Title: "ua4 offers, ua6 answers (keeps IP4)", Relay: RelayIsthmus,
			Offerer: Side{HostUA4, RoleOffer}, Answerer: Side{HostUA6, RoleAnswer},
			Expect: expectIPv4OfferToIPv6,
		},
		{
			ID: "4", Title: "dual-stack pair, direct IPv6", Relay: RelayIsthmus, DualStack: true,
			Offerer: Side{HostDS1, RoleOffer}, Answerer: Side{HostDS2, RoleAnswer},
			Expect: expectDirectIPv6,
		},
		{
			ID: "5.1", Title: "scenario 1 with coturn", Relay: RelayCoturn,
			Offerer: Side{HostUA6, RoleOffer}, Answerer: Side{HostUA4, RoleAnswer},
			Expect: expectIPv6OfferToIPv4,
		},
		{
			ID: "5.2", Title: "scenario 2 with coturn", Relay: RelayCoturn,
			Offerer: Side{HostLegacy4, RoleLegacyOffer}, Answerer: Side{HostUA6, RoleAnswer},
			Expect: expectLegacyToIPv6,
		},
	}
}

// DefaultScenarios returns the scenarios `isthmus demo` runs: 1 and 2, and
// their coturn twins (which Run skips when turnserver is missing).
func DefaultScenarios() []Scenario {
	var out []Scenario
	for _, s := range Scenarios() {
		switch s.ID {
		case "1", "2", "5.1", "5.2":
			out = append(out, s)
		}
	}
	return out
}
