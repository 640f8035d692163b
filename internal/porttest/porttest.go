package porttest

import (
	"fmt"
	"math/rand/v2"
	"net"
)

// Reserve returns a loopback TCP port that was free a moment ago. It is
// drawn below the kernel's ephemeral range (ip_local_port_range: 32768 and
// up by default), from which every port-0 listener and every outgoing
// connection of the tests running beside this one takes its port: a port
// the kernel handed out and the test released could be taken again before
// the daemon binds it ("address already in use", or a NATS node that never
// starts, under a loaded make test).
func Reserve() (int, error) {
	var err error
	for range 100 {
		port := 20000 + rand.IntN(12000)
		var l net.Listener
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port below the ephemeral range: %w", err)
}
