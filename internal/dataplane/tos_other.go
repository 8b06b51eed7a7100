//go:build !linux

package dataplane

func enableRecvTOS(int, bool)             {}
func (c *Conn) setMark(uint8)             {}
func systemHopLimits() (ttl4, hop6 uint8) { return 64, 64 }
