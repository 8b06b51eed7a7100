// Package kamailio embeds the dual-stack SIP proxy configuration of RFC
// 6157 §3.1.1 (kamailio.cfg, for Kamailio 5.6) and the sipp scenarios
// that exercise it (sipp/), so "isthmus demo --sip" can run them without
// a source tree.
package kamailio

import _ "embed"

// Config is kamailio.cfg: a dual-stack proxy and in-memory registrar that
// record-routes twice across families (rr's enable_double_rr).
//
//go:embed kamailio.cfg
var Config []byte

// SippUAS is sipp/uas-rr.xml: a UAS that copies Record-Route into its
// 180 and 200 (sipp's built-in one does not) and answers PCMU.
//
//go:embed sipp/uas-rr.xml
var SippUAS []byte
