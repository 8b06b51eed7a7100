package bench

import "time"

// DirStats are the figures of one direction of traffic, summed over calls.
type DirStats struct {
	Sent       uint64 `json:"sent"`
	Received   uint64 `json:"received"`
	Lost       uint64 `json:"lost"`
	Duplicates uint64 `json:"duplicates"`
	Reordered  uint64 `json:"reordered"`
	SendErrors uint64 `json:"send_errors"`
	// Skipped counts packets the generator did not send because it was
	// more than one packet interval behind schedule (not part of Sent).
	Skipped uint64 `json:"skipped_late"`
	// LossPct is Lost/Sent in percent.
	LossPct float64 `json:"loss_pct"`
	// Latency quantiles of the added latency (arrival minus send time on the
	// same clock), from the log-linear histogram.
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	// JitterMean and JitterMax are the mean and the largest RFC 3550 jitter
	// of the streams at the end of the run.
	JitterMean time.Duration `json:"jitter_mean_ns"`
	JitterMax  time.Duration `json:"jitter_max_ns"`
}

// Traffic is what one [Load.Run] measured.
type Traffic struct {
	Calls    int           `json:"calls"`
	Duration time.Duration `json:"duration_ns"`
	// Up is client leg -> relay -> peer leg; Down is peer -> relay -> client.
	Up   DirStats `json:"up"`
	Down DirStats `json:"down"`
	// All merges both directions (latency quantiles over every packet).
	All DirStats `json:"all"`
	// Misrouted counts packets that arrived at the wrong call or were not
	// bench packets.
	Misrouted uint64 `json:"misrouted"`
	// ClientInErrors counts datagrams pion's TURN client rejected.
	ClientInErrors uint64 `json:"client_in_errors"`
	// KernelRxTimestamps is set when every socket delivered kernel receive
	// times (SO_TIMESTAMPNS); otherwise some arrivals were stamped in user
	// space after the generator got a CPU.
	KernelRxTimestamps bool `json:"kernel_rx_timestamps"`
	// SendLateP99 and SendLateMax say how far behind schedule the senders
	// were: large values mean the generator, not the relay, is saturated.
	SendLateP99 time.Duration `json:"send_late_p99_ns"`
	SendLateMax time.Duration `json:"send_late_max_ns"`
	// GeneratorCPU is the generator process's CPU use during the run, in
	// CPUs (1.0 = one core busy).
	GeneratorCPU float64 `json:"generator_cpu"`
	// GeneratorBusy is the share of one core the load needed: the CPU use
	// above, or with GeneratorSpin (LoadConfig.Spin) the share of the time
	// the polling loop found something to send or receive (a spinning
	// loop's CPU use is always about one core).
	GeneratorBusy float64 `json:"generator_busy"`
	GeneratorSpin bool    `json:"generator_spin"`
	// ChannelDataOut and IndicationsOut count what the client legs wrote
	// over the whole life of the load (including setup): steady-state
	// traffic must be ChannelData.
	ChannelDataOut uint64 `json:"channeldata_out"`
	StunOut        uint64 `json:"stun_out"`
	ChannelDataIn  uint64 `json:"channeldata_in"`
	StunIn         uint64 `json:"stun_in"`
}

func (l *Load) traffic(d time.Duration) Traffic {
	t := Traffic{Calls: len(l.calls), Duration: d, Misrouted: l.misrouted.Load(),
		ClientInErrors: l.clientInErrors.Load(), KernelRxTimestamps: l.noRxStamps.Load() == 0}
	var all Histogram
	all.Merge(&l.hUp)
	all.Merge(&l.hDown)
	var jUp, jDown, jAll []time.Duration
	for _, c := range l.calls {
		addStream(&t.Up, &c.up, &jUp)
		addStream(&t.Down, &c.down, &jDown)
		t.ChannelDataOut += c.sock.chanOut.Load()
		t.StunOut += c.sock.stunOut.Load()
		t.ChannelDataIn += c.chanIn.Load()
		t.StunIn += c.stunIn.Load()
	}
	jAll = append(append(jAll, jUp...), jDown...)
	finish(&t.Up, &l.hUp, jUp)
	finish(&t.Down, &l.hDown, jDown)
	t.All = DirStats{
		Sent: t.Up.Sent + t.Down.Sent, Received: t.Up.Received + t.Down.Received,
		Duplicates: t.Up.Duplicates + t.Down.Duplicates, Reordered: t.Up.Reordered + t.Down.Reordered,
		SendErrors: t.Up.SendErrors + t.Down.SendErrors,
		Skipped:    t.Up.Skipped + t.Down.Skipped,
	}
	finish(&t.All, &all, jAll)
	return t
}

func addStream(d *DirStats, s *stream, jit *[]time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.Sent += s.sent
	d.Received += s.received
	d.Duplicates += s.duplicates
	d.Reordered += s.reordered
	d.SendErrors += s.sendErrors
	d.Skipped += s.skipped
	*jit = append(*jit, s.jitter.Value())
}

func finish(d *DirStats, h *Histogram, jit []time.Duration) {
	if d.Received < d.Sent {
		d.Lost = d.Sent - d.Received
	}
	if d.Sent > 0 {
		d.LossPct = 100 * float64(d.Lost) / float64(d.Sent)
	}
	d.P50, d.P99, d.P999, d.Max = h.Quantile(0.50), h.Quantile(0.99), h.Quantile(0.999), h.Max()
	var sum time.Duration
	for _, j := range jit {
		sum += j
		d.JitterMax = max(d.JitterMax, j)
	}
	if len(jit) > 0 {
		d.JitterMean = sum / time.Duration(len(jit))
	}
}
