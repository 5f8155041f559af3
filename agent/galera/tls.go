package galera

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// TLSFiles are the PEM files that encrypt and authenticate Galera's replication (gcomm and IST) and its state
// transfers: the cluster's CA, and this node's certificate and key.
type TLSFiles struct {
	CA   string
	Cert string
	Key  string
}

// TLSIn names the files in dir.
func TLSIn(dir string) TLSFiles {
	return TLSFiles{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node.key")}
}

// clusterCA derives the cluster's CA from the cluster secret: every node computes the same CA key (ECDSA P-256, its
// scalar from HKDF-SHA256 over the secret and the cluster's name), so that no CA key has to be handed out or kept
// anywhere. Whoever holds the cluster secret can mint a member's certificate: the same trust as the peer API.
// Rotating the secret rotates the CA: during the rotation every member trusts both CAs (WriteTLS's also), switches
// its certificate to the new one, then drops the old CA (ReloadTLS each time, without a restart).
func clusterCA(secret []byte, cluster string) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	if len(secret) < 16 {
		return nil, nil, nil, errors.New("galera tls: the cluster secret is too short to derive a CA from")
	}
	n := elliptic.P256().Params().N
	var key *ecdsa.PrivateKey
	for i := 0; key == nil; i++ {
		raw, err := hkdf.Key(sha256.New, secret, []byte("mailcow-ha galera ca v1"), fmt.Sprintf("%s/%d", cluster, i), 32)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("galera tls: %w", err)
		}
		if d := new(big.Int).SetBytes(raw); d.Sign() == 0 || d.Cmp(n) >= 0 {
			continue // not a scalar of the curve (odds about 2^-32): derive the next one
		}
		if key, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), raw); err != nil {
			return nil, nil, nil, fmt.Errorf("galera tls: %w", err)
		}
	}
	// The same subject, serial, validity and key on every node: the certificates differ only in their signature
	// (ECDSA's is randomized), which verifying a member's certificate does not look at.
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"mailcow-ha"}, CommonName: "mailcow-ha " + cluster + " galera CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("galera tls: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("galera tls: CA: %w", err)
	}
	return key, ca, der, nil
}

// WriteTLS writes the cluster's CA certificate and a new certificate and key for this node (its name, its private
// IP) into dir, readable by uid/gid (mariadbd's user: the key is 0600 and theirs). A node writes its certificate
// anew at every start; nothing in it expires within the cluster's lifetime. The certificate is signed by the CA of
// secret; the CA file also holds the CAs of also (during a rotation of the cluster secret, the other secret that the
// node accepts), so that members whose certificates come from either CA are trusted. The CAs share their subject:
// OpenSSL tells them apart by their key identifiers (each certificate names its CA's).
func WriteTLS(dir string, secret []byte, also [][]byte, cluster, node, ip string, uid, gid int) (TLSFiles, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("galera tls: node address %q: %w", ip, err)
	}
	caKey, ca, caDER, err := clusterCA(secret, cluster)
	if err != nil {
		return TLSFiles{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for _, a := range also {
		_, _, der, err := clusterCA(a, cluster)
		if err != nil {
			return TLSFiles{}, err
		}
		caPEM = append(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("galera tls: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return TLSFiles{}, fmt.Errorf("galera tls: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"mailcow-ha"}, CommonName: node},
		DNSNames:     []string{node},
		IPAddresses:  []net.IP{addr.AsSlice()},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(50, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("galera tls: node certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("galera tls: %w", err)
	}
	f := TLSIn(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return TLSFiles{}, fmt.Errorf("galera tls: %w", err)
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.CA, caPEM, 0o644},
		{f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
		{f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	} {
		if err := writeOwned(w.path, w.data, w.mode, uid, gid); err != nil {
			return TLSFiles{}, err
		}
	}
	return f, nil
}

// writeOwned replaces path with data (written to a temporary file first, so that a reader never sees half a
// key), with mode and owner.
func writeOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("galera tls: %w", err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("galera tls: %w", err)
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		return fmt.Errorf("galera tls: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("galera tls: %w", err)
	}
	return nil
}

// Owner is the uid and gid of a system user (mysql: mariadbd's user, which must read its key).
func Owner(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("galera tls: %w", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("galera tls: uid of %s: %w", name, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("galera tls: gid of %s: %w", name, err)
	}
	return uid, gid, nil
}

// ReloadTLS makes the running member behind socket read its TLS files again (socket.ssl_reload): connections made
// from then on use the new CA file and certificate; those open stay as they are.
func ReloadTLS(ctx context.Context, socket string) error {
	db, err := Open(socket)
	if err != nil {
		return err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(qctx, "SET GLOBAL wsrep_provider_options='socket.ssl_reload=1'"); err != nil {
		return fmt.Errorf("galera: socket.ssl_reload: %w", err)
	}
	return nil
}
