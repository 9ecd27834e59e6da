/*
 * listdriver: calls libfido2's fido_dev_make_cred and fido_dev_get_assert
 * with an excludeList or allowList of several credentials — what the
 * command-line tools cannot express (fido2-cred has no exclude input,
 * fido2-assert takes one credential id). internal/fido2tools builds it
 * against libfido2-dev and runs it with testdata/libfido2-shim preloaded,
 * so the device path udp:HOST:PORT reaches `virtkey run --transport udp`.
 *
 *   listdriver DEVICE mc RPID USERID_HEX RK PIN [EXCLUDE_ID_HEX ...]
 *   listdriver DEVICE ga RPID PIN [[+]ALLOW_ID_HEX[=PUBKEY_HEX] ...]
 *
 * RK is 0 or 1; PIN is the PIN or "-" for none. mc prints
 *   status=0xNN (libfido2 message)
 * and on success
 *   id=HEX pubkey=HEX fmt=FMT flags=0xNN verified=0|1
 * where pubkey is the ES256 key as libfido2 gives it (x ‖ y) and verified
 * says whether fido_cred_verify accepted the attestation. ga prints the
 * status line, count=N, and for each assertion
 *   assertion=I id=HEX user=HEX flags=0xNN sigcount=N verified=0|1|-
 * verified against the public key given with the allowList entry of that
 * id ("-": none given). An entry with a leading "+" only gives a key to
 * verify with and is not sent (for a discoverable getAssertion). A libfido2 status that is a CTAP error is that
 * error's byte (FIDO_ERR_CREDENTIAL_EXCLUDED = 0x19, ...). The exit status
 * is 0 whenever the device answered.
 *
 * Build: cc -O2 -Wall -Wextra -o listdriver listdriver.c -lfido2
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fido.h>
#include <fido/es256.h>

#define MAX_LIST 64

static int
unhex(const char *s, unsigned char **out, size_t *outlen)
{
	size_t n = strlen(s);
	if (n % 2 != 0)
		return -1;
	unsigned char *b = calloc(n / 2 + 1, 1);
	if (b == NULL)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1) {
			free(b);
			return -1;
		}
		b[i] = (unsigned char)v;
	}
	*out = b;
	*outlen = n / 2;
	return 0;
}

static void
printhex(const char *label, const unsigned char *p, size_t n)
{
	printf("%s=", label);
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static void
status(int r)
{
	printf("status=0x%02x (%s)\n", r & 0xff, fido_strerr(r));
}

/* cdh fills a 32-byte client data hash (its value does not matter here). */
static void
cdh(unsigned char h[32], unsigned char seed)
{
	for (int i = 0; i < 32; i++)
		h[i] = (unsigned char)(seed + 7 * i);
}

static int
make_cred(fido_dev_t *dev, int argc, char **argv)
{
	/* RPID USERID_HEX RK PIN [EXCLUDE...] */
	if (argc < 4) {
		fprintf(stderr, "mc: RPID USERID_HEX RK PIN [EXCLUDE_ID_HEX ...]\n");
		return 2;
	}
	const char *rpid = argv[0];
	const char *pin = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
	unsigned char *uid, hash[32];
	size_t uidlen;
	if (unhex(argv[1], &uid, &uidlen) != 0) {
		fprintf(stderr, "mc: bad user id\n");
		return 2;
	}
	fido_cred_t *cred = fido_cred_new();
	cdh(hash, 0x11);
	int r;
	if ((r = fido_cred_set_type(cred, COSE_ES256)) != FIDO_OK ||
	    (r = fido_cred_set_clientdata_hash(cred, hash, sizeof(hash))) != FIDO_OK ||
	    (r = fido_cred_set_rp(cred, rpid, "listdriver")) != FIDO_OK ||
	    (r = fido_cred_set_user(cred, uid, uidlen, "listdriver user", "List Driver", NULL)) != FIDO_OK ||
	    (r = fido_cred_set_rk(cred, strcmp(argv[2], "1") == 0 ? FIDO_OPT_TRUE : FIDO_OPT_OMIT)) != FIDO_OK) {
		fprintf(stderr, "mc: building the request: %s\n", fido_strerr(r));
		return 2;
	}
	for (int i = 4; i < argc; i++) {
		unsigned char *id;
		size_t idlen;
		if (unhex(argv[i], &id, &idlen) != 0 || (r = fido_cred_exclude(cred, id, idlen)) != FIDO_OK) {
			fprintf(stderr, "mc: bad exclude id %s\n", argv[i]);
			return 2;
		}
		free(id);
	}
	r = fido_dev_make_cred(dev, cred, pin);
	status(r);
	if (r == FIDO_OK) {
		printhex("id", fido_cred_id_ptr(cred), fido_cred_id_len(cred));
		printf(" ");
		printhex("pubkey", fido_cred_pubkey_ptr(cred), fido_cred_pubkey_len(cred));
		printf(" fmt=%s flags=0x%02x verified=%d\n", fido_cred_fmt(cred),
		    fido_cred_flags(cred), fido_cred_verify(cred) == FIDO_OK);
	}
	fido_cred_free(&cred);
	free(uid);
	return 0;
}

struct allowed {
	unsigned char *id, *pk;
	size_t idlen, pklen;
	int sent; /* in the allowList, not only a key to verify with */
};

static int
get_assert(fido_dev_t *dev, int argc, char **argv)
{
	/* RPID PIN [ALLOW[=PUBKEY]...] */
	if (argc < 2 || argc - 2 > MAX_LIST) {
		fprintf(stderr, "ga: RPID PIN [[+]ALLOW_ID_HEX[=PUBKEY_HEX] ...]\n");
		return 2;
	}
	const char *rpid = argv[0];
	const char *pin = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
	struct allowed allow[MAX_LIST];
	int nallow = 0, r;
	unsigned char hash[32];
	fido_assert_t *as = fido_assert_new();
	cdh(hash, 0x22);
	if ((r = fido_assert_set_clientdata_hash(as, hash, sizeof(hash))) != FIDO_OK ||
	    (r = fido_assert_set_rp(as, rpid)) != FIDO_OK ||
	    (r = fido_assert_set_up(as, FIDO_OPT_TRUE)) != FIDO_OK) {
		fprintf(stderr, "ga: building the request: %s\n", fido_strerr(r));
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		struct allowed *a = &allow[nallow++];
		char *arg = argv[i];
		a->sent = arg[0] != '+';
		if (!a->sent)
			arg++;
		char *eq = strchr(arg, '=');
		a->pk = NULL;
		a->pklen = 0;
		if (eq != NULL) {
			*eq = '\0';
			if (unhex(eq + 1, &a->pk, &a->pklen) != 0) {
				fprintf(stderr, "ga: bad public key\n");
				return 2;
			}
		}
		if (unhex(arg, &a->id, &a->idlen) != 0 ||
		    (a->sent && (r = fido_assert_allow_cred(as, a->id, a->idlen)) != FIDO_OK)) {
			fprintf(stderr, "ga: bad allow id %s\n", arg);
			return 2;
		}
	}
	r = fido_dev_get_assert(dev, as, pin);
	status(r);
	if (r == FIDO_OK) {
		size_t n = fido_assert_count(as);
		printf("count=%zu\n", n);
		for (size_t i = 0; i < n; i++) {
			const unsigned char *id = fido_assert_id_ptr(as, i);
			size_t idlen = fido_assert_id_len(as, i);
			printf("assertion=%zu ", i);
			printhex("id", id, idlen);
			printf(" ");
			printhex("user", fido_assert_user_id_ptr(as, i), fido_assert_user_id_len(as, i));
			printf(" flags=0x%02x sigcount=%u verified=", fido_assert_flags(as, i), fido_assert_sigcount(as, i));
			const struct allowed *match = NULL;
			for (int j = 0; j < nallow; j++)
				if (allow[j].pk != NULL && allow[j].idlen == idlen && memcmp(allow[j].id, id, idlen) == 0)
					match = &allow[j];
			if (match == NULL) {
				printf("-\n");
				continue;
			}
			es256_pk_t *pk = es256_pk_new();
			int ok = es256_pk_from_ptr(pk, match->pk, match->pklen) == FIDO_OK &&
			    fido_assert_verify(as, i, COSE_ES256, pk) == FIDO_OK;
			es256_pk_free(&pk);
			printf("%d\n", ok);
		}
	}
	for (int i = 0; i < nallow; i++) {
		free(allow[i].id);
		free(allow[i].pk);
	}
	fido_assert_free(&as);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: listdriver DEVICE mc|ga ...\n");
		return 2;
	}
	fido_init(getenv("VIRTKEY_DRIVER_DEBUG") != NULL ? FIDO_DEBUG : 0);
	fido_dev_t *dev = fido_dev_new();
	int r;
	if ((r = fido_dev_open(dev, argv[1])) != FIDO_OK) {
		fprintf(stderr, "listdriver: open %s: %s\n", argv[1], fido_strerr(r));
		return 1;
	}
	int rc;
	if (strcmp(argv[2], "mc") == 0)
		rc = make_cred(dev, argc - 3, argv + 3);
	else if (strcmp(argv[2], "ga") == 0)
		rc = get_assert(dev, argc - 3, argv + 3);
	else {
		fprintf(stderr, "listdriver: unknown command %s\n", argv[2]);
		rc = 2;
	}
	fido_dev_close(dev);
	fido_dev_free(&dev);
	return rc;
}
