/*
 * udpshim: an LD_PRELOAD library that lets unmodified libfido2 programs
 * (fido2-token, fido2-cred, fido2-assert, OpenSSH's ssh-sk-helper) talk to a
 * CTAPHID authenticator that carries one 64-byte HID report per UDP datagram,
 * such as `virtkey run --transport udp`.
 *
 * It interposes two libfido2 entry points:
 *
 *   fido_dev_open(dev, "udp:HOST:PORT")
 *       installs report-level I/O functions with fido_dev_set_io_functions
 *       (a UDP socket bound to an ephemeral port on 127.0.0.1, or on the
 *       wildcard address for a non-loopback HOST, and connected to
 *       HOST:PORT), then calls the real fido_dev_open. Any other path is
 *       passed through untouched.
 *
 *   fido_dev_info_manifest(list, ilen, olen)
 *       calls the real one, then appends $VIRTKEY_UDP_DEVICE (for example
 *       "udp:127.0.0.1:8111") with fido_dev_info_set, so `fido2-token -L`
 *       lists it and programs that pick a device themselves (ssh-keygen,
 *       fido2-token -L -r without a path) find it.
 *
 * libfido2's report I/O contract (fido.h, fido_dev_io_t): write(h, buf, n)
 * gets the report id 0x00 followed by the report (n = 65) and must return
 * n; read(h, buf, 64, ms) must return 64 or -1, waiting at most ms
 * milliseconds (ms < 0: no limit).
 *
 * Build: cc -shared -fPIC -O2 -Wall -o udpshim.so udpshim.c -ldl
 *        (see Makefile). Set VIRTKEY_SHIM_DEBUG=1 to trace every report on
 *        stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <fido.h>

#define UDP_PREFIX "udp:"
#define REPORT_LEN 64

/*
 * The handle starts like libfido2's Linux hid handle (struct hid_linux:
 * int fd; size_t report_in_len; size_t report_out_len; ...) so that even a
 * device opened through fido_dev_new_with_info() from our manifest entry,
 * where libfido2 asks fido_hid_report_{in,out}_len() for the report sizes,
 * reads 64 and 64.
 */
struct udp_handle {
	int    fd;
	size_t report_in_len;
	size_t report_out_len;
	int    debug;
};

static int
debug_enabled(void)
{
	const char *s = getenv("VIRTKEY_SHIM_DEBUG");

	return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

static void
trace(const struct udp_handle *h, const char *dir, const unsigned char *p,
    size_t n)
{
	size_t i;

	if (h == NULL || !h->debug)
		return;
	fprintf(stderr, "udpshim: %s %zu:", dir, n);
	for (i = 0; i < n && i < 16; i++)
		fprintf(stderr, " %02x", p[i]);
	fprintf(stderr, "%s\n", n > 16 ? " ..." : "");
}

static int
is_udp_path(const char *path)
{
	return path != NULL &&
	    strncmp(path, UDP_PREFIX, strlen(UDP_PREFIX)) == 0;
}

/* split "udp:HOST:PORT" (HOST may be [v6]) into host and port */
static int
parse_udp_path(const char *path, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *s = path + strlen(UDP_PREFIX);
	const char *colon = strrchr(s, ':');
	size_t n;

	if (colon == NULL || colon == s || colon[1] == '\0')
		return -1;
	n = (size_t)(colon - s);
	if (s[0] == '[' && n >= 2 && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n >= hostlen || strlen(colon + 1) >= portlen)
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static void *
udp_open(const char *path)
{
	char host[256], port[32];
	struct addrinfo hints, *res = NULL, *ai;
	struct udp_handle *h;
	int fd = -1;

	if (!is_udp_path(path) ||
	    parse_udp_path(path, host, sizeof(host), port, sizeof(port)) < 0) {
		fprintf(stderr, "udpshim: bad device path %s (want udp:HOST:PORT)\n",
		    path ? path : "(null)");
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) {
		fprintf(stderr, "udpshim: cannot resolve %s\n", path);
		return NULL;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd < 0)
			continue;
		if (ai->ai_family == AF_INET) {
			struct sockaddr_in local;
			const struct sockaddr_in *peer =
			    (const struct sockaddr_in *)ai->ai_addr;

			memset(&local, 0, sizeof(local));
			local.sin_family = AF_INET;
			local.sin_port = 0; /* ephemeral */
			/* loopback peer: bind loopback; else any address */
			local.sin_addr.s_addr =
			    (ntohl(peer->sin_addr.s_addr) >> 24) == 127 ?
			    htonl(INADDR_LOOPBACK) : htonl(INADDR_ANY);
			if (bind(fd, (struct sockaddr *)&local,
			    sizeof(local)) < 0) {
				close(fd);
				fd = -1;
				continue;
			}
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "udpshim: cannot connect a UDP socket to %s: %s\n",
		    path, strerror(errno));
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		close(fd);
		return NULL;
	}
	h->fd = fd;
	h->report_in_len = REPORT_LEN;
	h->report_out_len = REPORT_LEN;
	h->debug = debug_enabled();
	if (h->debug)
		fprintf(stderr, "udpshim: opened %s\n", path);
	return h;
}

static void
udp_close(void *handle)
{
	struct udp_handle *h = handle;

	if (h == NULL)
		return;
	close(h->fd);
	free(h);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
udp_read(void *handle, unsigned char *buf, size_t len, int ms)
{
	struct udp_handle *h = handle;
	unsigned char pkt[REPORT_LEN + 64];
	long long deadline = ms >= 0 ? now_ms() + ms : -1;

	if (h == NULL || len < REPORT_LEN)
		return -1;
	for (;;) {
		struct pollfd pfd = { .fd = h->fd, .events = POLLIN };
		int wait = -1, r;
		ssize_t n;

		if (deadline >= 0) {
			long long left = deadline - now_ms();
			wait = left > 0 ? (int)left : 0;
		}
		r = poll(&pfd, 1, wait);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			if (h->debug)
				fprintf(stderr, "udpshim: read timeout (%d ms)\n", ms);
			return -1;
		}
		n = recv(h->fd, pkt, sizeof(pkt), 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			/* ECONNREFUSED: nobody listens (yet); a timeout */
			if (h->debug)
				fprintf(stderr, "udpshim: recv: %s\n",
				    strerror(errno));
			if (deadline < 0) {
				usleep(10000);
				continue;
			}
			if (now_ms() >= deadline)
				return -1;
			usleep(10000);
			continue;
		}
		if (n != REPORT_LEN) {
			if (h->debug)
				fprintf(stderr, "udpshim: dropped a %zd-byte datagram\n", n);
			continue;
		}
		memcpy(buf, pkt, REPORT_LEN);
		trace(h, "<-", buf, REPORT_LEN);
		return REPORT_LEN;
	}
}

static int
udp_write(void *handle, const unsigned char *buf, size_t len)
{
	struct udp_handle *h = handle;
	unsigned char pkt[REPORT_LEN];
	ssize_t n;

	/* buf[0] is the report id (0x00); the report follows */
	if (h == NULL || len < 2 || len - 1 > REPORT_LEN)
		return -1;
	memset(pkt, 0, sizeof(pkt));
	memcpy(pkt, buf + 1, len - 1);
	trace(h, "->", pkt, REPORT_LEN);
	do {
		n = send(h->fd, pkt, REPORT_LEN, 0);
	} while (n < 0 && errno == EINTR);
	if (n != REPORT_LEN) {
		if (h->debug)
			fprintf(stderr, "udpshim: send: %s\n", strerror(errno));
		return -1;
	}
	return (int)len;
}

static const fido_dev_io_t udp_io = {
	udp_open,
	udp_close,
	udp_read,
	udp_write,
};

/*
 * Every libfido2 function the shim uses is looked up with dlsym(RTLD_NEXT)
 * rather than linked, so the library has no undefined libfido2 symbols and
 * can be preloaded into every process of a pipeline (sh, script, ssh-keygen)
 * even when they do not link libfido2.
 */
typedef int open_fn(fido_dev_t *, const char *);
typedef int manifest_fn(fido_dev_info_t *, size_t, size_t *);
typedef int set_io_fn(fido_dev_t *, const fido_dev_io_t *);
typedef int info_set_fn(fido_dev_info_t *, size_t, const char *, const char *,
    const char *, const fido_dev_io_t *, const fido_dev_transport_t *);
typedef const char *strerr_fn(int);

static void *
next_symbol(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p == NULL)
		fprintf(stderr, "udpshim: dlsym(%s): %s\n", name, dlerror());
	return p;
}

static const char *
strerr(int r)
{
	static strerr_fn *f;

	if (f == NULL && (f = (strerr_fn *)next_symbol("fido_strerr")) == NULL)
		return "?";
	return f(r);
}

int
fido_dev_open(fido_dev_t *dev, const char *path)
{
	static open_fn *real;
	static set_io_fn *set_io;
	int r;

	if (real == NULL && (real = (open_fn *)next_symbol("fido_dev_open")) == NULL)
		return FIDO_ERR_INTERNAL;
	if (!is_udp_path(path))
		return real(dev, path);
	if (set_io == NULL && (set_io = (set_io_fn *)
	    next_symbol("fido_dev_set_io_functions")) == NULL)
		return FIDO_ERR_INTERNAL;
	if ((r = set_io(dev, &udp_io)) != FIDO_OK) {
		fprintf(stderr, "udpshim: fido_dev_set_io_functions: %s\n",
		    strerr(r));
		return r;
	}
	return real(dev, path);
}

int
fido_dev_info_manifest(fido_dev_info_t *devlist, size_t ilen, size_t *olen)
{
	static manifest_fn *real;
	static info_set_fn *info_set;
	const char *path = getenv("VIRTKEY_UDP_DEVICE");
	int r;

	if (real == NULL &&
	    (real = (manifest_fn *)next_symbol("fido_dev_info_manifest")) == NULL)
		return FIDO_ERR_INTERNAL;
	if (!is_udp_path(path))
		return real(devlist, ilen, olen);
	if (info_set == NULL && (info_set = (info_set_fn *)
	    next_symbol("fido_dev_info_set")) == NULL)
		return real(devlist, ilen, olen);
	if (ilen == 0) {
		*olen = 0;
		return FIDO_OK;
	}
	/* leave one slot for the UDP device */
	if ((r = real(devlist, ilen - 1, olen)) != FIDO_OK) {
		/* no hidraw access is not fatal: we still have our device */
		if (debug_enabled())
			fprintf(stderr, "udpshim: real manifest: %s\n", strerr(r));
		*olen = 0;
	}
	r = info_set(devlist, *olen, path, "virtkey",
	    "UDP authenticator", &udp_io, NULL);
	if (r != FIDO_OK) {
		fprintf(stderr, "udpshim: fido_dev_info_set: %s\n", strerr(r));
		return FIDO_OK;
	}
	(*olen)++;
	return FIDO_OK;
}
