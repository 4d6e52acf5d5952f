// Command triad-vcsim runs govmomi's vCenter simulator (vcsim) for triad's tests.
//
// It builds simulator.VPX() with three clusters (triad's three failure domains),
// serves the SOAP API over TLS on a loopback port with a certificate signed by a
// CA it generates (written to -ca so clients can verify it), marks one VM as a
// template, requires the given credentials, prints one line
//
//	TRIAD_VCSIM_URL=https://127.0.0.1:PORT/sdk
//
// and serves until SIGTERM or SIGINT.
//
// Build offline from Debian's packages (golang-go, golang-github-vmware-govmomi-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o triad-vcsim .
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	clusters := flag.Int("clusters", 3, "number of compute clusters (failure domains)")
	hosts := flag.Int("hosts", 1, "hosts per cluster")
	user := flag.String("username", "triad", "the only user name Login accepts")
	pass := flag.String("password", "triad-vcsim", "the only password Login accepts")
	caOut := flag.String("ca", "", "write the CA certificate (PEM) that signed the server certificate here")
	template := flag.String("template", "ubuntu-template", "name of the VM turned into a template")
	flag.Parse()

	cert, caPEM, err := certificates()
	if err != nil {
		log.Fatalf("certificates: %v", err)
	}
	if *caOut != "" {
		if err := os.WriteFile(*caOut, caPEM, 0o644); err != nil {
			log.Fatalf("write %s: %v", *caOut, err)
		}
	}

	model := simulator.VPX()
	model.Cluster = *clusters
	model.ClusterHost = *hosts
	model.Host = 0
	if err := model.Create(); err != nil {
		log.Fatalf("create model: %v", err)
	}
	defer model.Remove()

	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, *pass)}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	defer server.Close()

	if err := makeTemplate(server.URL, *template); err != nil {
		log.Fatalf("template: %v", err)
	}

	u := *server.URL
	u.User = nil
	fmt.Printf("TRIAD_VCSIM_URL=%s\n", u.String())
	os.Stdout.Sync()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

// makeTemplate powers off the first VM of the first cluster, renames it and marks it
// as a template: vcsim's VPX model has VMs but no template.
func makeTemplate(u *url.URL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	defer c.Logout(ctx)
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	finder.SetDatacenter(dc)
	vms, err := finder.VirtualMachineList(ctx, "*")
	if err != nil || len(vms) == 0 {
		return fmt.Errorf("no VM to turn into a template: %v", err)
	}
	vm := vms[0]
	if state, err := vm.PowerState(ctx); err == nil && state == types.VirtualMachinePowerStatePoweredOn {
		task, err := vm.PowerOff(ctx)
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return err
		}
	}
	task, err := vm.Rename(ctx, name)
	if err != nil {
		return err
	}
	if err := task.Wait(ctx); err != nil {
		return err
	}
	return vm.MarkAsTemplate(ctx)
}

// certificates makes a CA and a server certificate for 127.0.0.1, ::1 and localhost
// signed by it; returns the server's key pair and the CA in PEM.
func certificates() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "triad vcsim test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return cert, caPEM, nil
}
