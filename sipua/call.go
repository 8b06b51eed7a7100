package sipua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/sipaddr"
)

// Call is an established call: the dialog and its media path.
type Call struct {
	ua    *UA
	agent *gather.Agent
	media *gather.MediaConn
	uac   *sipgo.DialogClientSession // nil on the answering side
	uas   *sipgo.DialogServerSession // nil on the calling side
	// remoteSDP is the peer's offer or answer as received.
	remoteSDP []byte
	routes    []string

	hangOnce sync.Once
	hangErr  error
}

// Media is the connected media path (gather.Agent.Connect's MediaConn).
func (c *Call) Media() *gather.MediaConn { return c.media }

// RemoteSDP is the SDP the peer sent: the answer in the 200 OK, or the
// offer in the INVITE.
func (c *Call) RemoteSDP() []byte { return c.remoteSDP }

// RouteSet is the dialog's route set in the order in-dialog requests use
// it (RFC 3261 §12.1): the Record-Route values reversed on the calling
// side, as received on the answering side. Across a dual-stack proxy that
// inserted two entries (RFC 6157 §3.1.1) the first one is of the UA's
// family.
func (c *Call) RouteSet() []string { return c.routes }

// Done is closed when the dialog ends: a BYE from the peer, or Hangup.
func (c *Call) Done() <-chan struct{} {
	if c.uac != nil {
		return c.uac.Context().Done()
	}
	return c.uas.Context().Done()
}

// Hangup sends BYE (unless the peer already did) and closes the media
// path and the agent. It is safe to call more than once.
func (c *Call) Hangup(ctx context.Context) error {
	c.hangOnce.Do(func() {
		select {
		case <-c.Done():
		default:
			// sipgo's Bye builds a request without the client's local
			// address (it would leave from a new socket); ours carries
			// it, and the dialog fills in From, To, Call-ID, CSeq and the
			// route set.
			if c.uac != nil {
				c.hangErr = c.uac.WriteBye(ctx, c.ua.newBye(c.uac.InviteResponse.Contact(), c.uac.InviteRequest))
			} else {
				c.hangErr = c.uas.WriteBye(ctx, c.ua.newBye(c.uas.InviteRequest.Contact(), c.uas.InviteRequest))
			}
			if c.hangErr != nil {
				c.hangErr = fmt.Errorf("sipua: BYE: %w", c.hangErr)
			}
		}
		if c.media != nil {
			_ = c.media.Close()
		}
		_ = c.agent.Close()
		if c.uac != nil {
			_ = c.uac.Close()
		} else {
			_ = c.uas.Close()
		}
	})
	return c.hangErr
}

// newBye is a BYE to the peer's Contact (the remote target, RFC 3261
// §12.2.1.1) leaving from the UA's socket.
func (u *UA) newBye(remote *sip.ContactHeader, inv *sip.Request) *sip.Request {
	target := inv.Recipient
	if remote != nil {
		target = remote.Address
	}
	bye := sip.NewRequest(sip.BYE, *target.Clone())
	bye.SetTransport(inv.Transport())
	bye.Laddr = u.laddr()
	return bye
}

// Dial calls to (a SIP URI, "sip:bob@example.org") with agent's offer:
// INVITE through the located proxy (or to's server), digest
// authentication on 401/407, the answer from the 2xx into
// agent.SetRemoteAnswer, ACK, then agent.Connect. Cancelling ctx before
// the answer sends CANCEL (RFC 3261 §9.1). The Call owns agent from then
// on; on error agent is left to the caller.
func (u *UA) Dial(ctx context.Context, to string, agent *gather.Agent) (*Call, error) {
	if _, err := sipaddr.ParseURI(to); err != nil {
		return nil, fmt.Errorf("sipua: Dial: %w", err)
	}
	var ruri sip.Uri
	if err := sip.ParseUri(to, &ruri); err != nil {
		return nil, fmt.Errorf("sipua: Dial: %w", err)
	}
	where := to
	if u.cfg.Proxy != "" {
		where = u.cfg.Proxy
	}
	targets, err := u.targets(ctx, where)
	if err != nil {
		return nil, err
	}
	offer, err := agent.Offer(ctx)
	if err != nil {
		return nil, fmt.Errorf("sipua: Dial: offer: %w", err)
	}
	var last error
	for _, t := range targets {
		d, err := u.invite(ctx, ruri, t, offer)
		if err == nil {
			return u.confirm(ctx, d, agent)
		}
		last = err
		var re *ResponseError
		if ctx.Err() != nil || (errors.As(err, &re) && re.Code != sip.StatusServiceUnavailable) {
			return nil, err
		}
		u.log.Warn("sipua: INVITE attempt failed, trying the next target", "target", t.String(), "err", err)
	}
	return nil, last
}

// invite sends one INVITE to target t and waits for its final answer.
func (u *UA) invite(ctx context.Context, ruri sip.Uri, t netip.AddrPort, offer []byte) (*sipgo.DialogClientSession, error) {
	req := sip.NewRequest(sip.INVITE, ruri)
	if u.cfg.Proxy != "" {
		// Pre-loaded Route (RFC 3261 §8.1.2): sipgo sends to the top
		// Route, and copies it into a CANCEL, which otherwise would go
		// to the Request-URI's host.
		req.AppendHeader(routeHeader(t))
	} else {
		req.SetDestination(t.String())
	}
	from := &sip.FromHeader{Address: u.aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: ruri.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}})
	req.AppendHeader(sip.NewHeader("User-Agent", u.cfg.UserAgent))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetTransport("UDP")
	req.SetBody(offer)
	d, err := u.dcc.WriteInvite(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("sipua: INVITE to %s: %w", t, err)
	}
	err = d.WaitAnswer(ctx, sipgo.AnswerOptions{
		Username: u.cfg.Username, Password: u.cfg.Password,
		OnResponse: func(r *sip.Response) error {
			u.log.Debug("sipua: INVITE response", "code", r.StatusCode, "reason", r.Reason)
			return nil
		},
	})
	if err != nil {
		_ = d.Close()
		var dr *sipgo.ErrDialogResponse
		if errors.As(err, &dr) {
			return nil, &ResponseError{Method: "INVITE", Code: dr.Res.StatusCode, Reason: dr.Res.Reason}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sipua: INVITE cancelled: %w", ctx.Err())
		}
		return nil, fmt.Errorf("sipua: INVITE to %s: %w", t, err)
	}
	return d, nil
}

// confirm takes the answer from the 2xx, ACKs and connects the media.
func (u *UA) confirm(ctx context.Context, d *sipgo.DialogClientSession, agent *gather.Agent) (*Call, error) {
	res := d.InviteResponse
	c := &Call{ua: u, agent: agent, uac: d, remoteSDP: res.Body()}
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		c.routes = append(c.routes, rr[i].Value())
	}
	// ACK first: the answer is final whatever the media does, and the
	// UAS retransmits its 2xx until it is ACKed (RFC 3261 §13.3.1.4).
	if err := d.Ack(ctx); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("sipua: ACK (route set %q): %w", c.routes, err)
	}
	fail := func(err error) (*Call, error) {
		_ = d.Bye(ctx)
		_ = d.Close()
		return nil, err
	}
	if len(c.remoteSDP) == 0 {
		return fail(errors.New("sipua: 2xx to INVITE without SDP answer"))
	}
	if err := agent.SetRemoteAnswer(c.remoteSDP); err != nil {
		return fail(fmt.Errorf("sipua: answer: %w", err))
	}
	m, err := agent.Connect(ctx)
	if err != nil {
		return fail(fmt.Errorf("sipua: media: %w", err))
	}
	c.media = m
	u.log.Info("sipua: call up", "to", d.InviteRequest.Recipient.String(), "path", m.Selected().String(), "routes", c.routes)
	return c, nil
}

// Incoming is a new incoming INVITE handed to Config.OnInvite.
type Incoming struct {
	ua   *UA
	req  *sip.Request
	dlg  *sipgo.DialogServerSession
	done bool
}

// From is the caller's From URI.
func (in *Incoming) From() string {
	if f := in.req.From(); f != nil {
		return f.Address.String()
	}
	return ""
}

// Offer is the SDP offer in the INVITE (empty for an offerless INVITE,
// which Answer refuses).
func (in *Incoming) Offer() []byte { return in.req.Body() }

// Request is the INVITE as sipgo parsed it, for headers this type does not
// expose.
func (in *Incoming) Request() *sip.Request { return in.req }

// Cancelled is closed when the caller cancels (CANCEL) or the INVITE
// transaction ends before an answer.
func (in *Incoming) Cancelled() <-chan struct{} { return in.dlg.Context().Done() }

// Ring sends 180 Ringing.
func (in *Incoming) Ring() error { return in.dlg.Respond(sip.StatusRinging, "Ringing", nil) }

// Reject answers with a final non-2xx response (486 Busy Here, 603
// Decline...).
func (in *Incoming) Reject(code int, reason string) error {
	if in.done {
		return nil
	}
	in.done = true
	return in.dlg.Respond(code, reason, nil)
}

// Answer answers the offer with agent (gather.Agent.Answer), sends the
// 2xx with the answer, waits for the ACK and connects the media. An offer
// the agent cannot answer (no address of the offer's family, RFC 6157
// §4.1 rule 2) is refused with 488. The Call owns agent from then on.
func (in *Incoming) Answer(ctx context.Context, agent *gather.Agent) (*Call, error) {
	if in.done {
		return nil, errors.New("sipua: Answer: INVITE already answered")
	}
	offer := in.req.Body()
	if len(offer) == 0 {
		_ = in.Reject(sip.StatusNotAcceptableHere, "No SDP offer")
		return nil, errors.New("sipua: Answer: INVITE without SDP offer")
	}
	answer, err := agent.Answer(ctx, offer)
	if err != nil {
		_ = in.Reject(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return nil, fmt.Errorf("sipua: Answer: %w", err)
	}
	in.done = true
	res := sip.NewSDPResponseFromRequest(in.dlg.InviteRequest, answer)
	res.AppendHeader(sip.NewHeader("User-Agent", in.ua.cfg.UserAgent))
	// WriteResponse retransmits the 2xx until the ACK (RFC 3261
	// §13.3.1.4) and returns when it came.
	if err := in.dlg.WriteResponse(res); err != nil {
		return nil, fmt.Errorf("sipua: Answer: 200: %w", err)
	}
	c := &Call{ua: in.ua, agent: agent, uas: in.dlg, remoteSDP: offer}
	for _, h := range in.req.GetHeaders("Record-Route") {
		c.routes = append(c.routes, h.Value())
	}
	m, err := agent.Connect(ctx)
	if err != nil {
		_ = in.dlg.Bye(ctx)
		_ = in.dlg.Close()
		return nil, fmt.Errorf("sipua: media: %w", err)
	}
	c.media = m
	in.ua.log.Info("sipua: call answered", "from", in.From(), "path", m.Selected().String(), "routes", c.routes)
	return c, nil
}

func (u *UA) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if err := checkHosts(req); err != nil {
		// RFC 5118 §4.2: a reference sipgo let through but that is not
		// a valid IPv6 host is a 400.
		u.log.Warn("sipua: INVITE refused", "err", err)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request ("+err.Error()+")", nil))
		return
	}
	if req.To() != nil {
		if _, ok := req.To().Params.Get("tag"); ok {
			// A re-INVITE: hold/resume is not supported yet.
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
	}
	d, err := u.dsc.ReadInvite(req, tx)
	if err != nil {
		u.log.Warn("sipua: INVITE unreadable", "err", err)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request", nil))
		return
	}
	in := &Incoming{ua: u, req: req, dlg: d}
	if u.cfg.OnInvite != nil {
		u.cfg.OnInvite(in)
	}
	if !in.done {
		_ = in.Reject(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		_ = d.Close()
	}
}

func (u *UA) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if err := u.dsc.ReadAck(req, tx); err != nil {
		u.log.Debug("sipua: ACK outside a dialog", "err", err)
	}
}

func (u *UA) onBye(req *sip.Request, tx sip.ServerTransaction) {
	err := u.dcc.ReadBye(req, tx)
	if errors.Is(err, sipgo.ErrDialogDoesNotExists) || errors.Is(err, sipgo.ErrDialogOutsideDialog) {
		err = u.dsc.ReadBye(req, tx)
	}
	if err != nil {
		u.log.Debug("sipua: BYE outside a dialog", "err", err)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
	}
}
