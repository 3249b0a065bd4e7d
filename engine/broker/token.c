/*
 * token.c - the broker's bearer tokens, each read from its file or created
 * there with mode 0600 and 32 random bytes (hex) on first start, compared
 * in constant time: the admin token (admin endpoints) and the Task
 * Servers' token (heartbeats).  Two files, so a Task Server holds no admin
 * power and either can be rotated alone.
 *
 * Used by: broker.c (start), http.c (every admin request), routes.c
 * (heartbeats).  Needs: broker_internal.h, getrandom(2).
 */
#include "broker_internal.h"

#include <ctype.h>
#include <event2/keyvalq_struct.h>
#include <strings.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_MIN 16

/* A token file: `path` read into dst (at most dstlen - 1 characters), or
 * created.  `what` names it in messages ("admin token"). */
static int create_token(tsl_broker *b, const char *path, const char *what, char *dst,
                        size_t dstlen)
{
    unsigned char raw[32];
    char text[sizeof raw * 2 + 2];
    int fd = -1, err = 0;
    size_t got = 0;

    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = tsl_seterr(TSL_ERROR, "cannot get random bytes for the %s: %s", what,
                             strerror(errno));
            goto done;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(text + 2 * i, 3, "%02x", raw[i]);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot create the %s file %s: %s", what, path,
                         strerror(errno));
        goto done;
    }
    size_t len = strlen(text);
    text[len] = '\n';
    if (fchmod(fd, 0600) < 0 || write(fd, text, len + 1) != (ssize_t)(len + 1) || fsync(fd) < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot write the %s file %s: %s", what, path,
                         strerror(errno));
        unlink(path);
        goto done;
    }
    text[len] = '\0';
    snprintf(dst, dstlen, "%s", text);
    broker_log(b, TSL_LOG_INFO, "Created the %s file %s (mode 0600)", what, path);

done:
    if (fd >= 0)
        close(fd);
    memset(raw, 0, sizeof raw);
    memset(text, 0, sizeof text);
    return err;
}

static int load_token(tsl_broker *b, const char *path, const char *what, char *dst,
                      size_t dstlen)
{
    char text[128];
    struct stat st;
    int err = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0 && errno == ENOENT)
        return create_token(b, path, what, dst, dstlen);
    if (fd < 0)
        return tsl_seterr(TSL_ERROR, "cannot open the %s file %s: %s", what, path,
                          strerror(errno));
    ssize_t n = read(fd, text, sizeof text - 1);
    if (n < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot read the %s file %s: %s", what, path,
                         strerror(errno));
        goto done;
    }
    text[n] = '\0';
    while (n > 0 && isspace((unsigned char)text[n - 1]))
        text[--n] = '\0';
    if ((size_t)n >= dstlen) {
        err = tsl_seterr(TSL_EINVALID, "the %s in %s is longer than %zu characters", what, path,
                         dstlen - 1);
        goto done;
    }
    if (n < TOKEN_MIN || strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789-._~+/=") != (size_t)n) {
        err = tsl_seterr(TSL_EINVALID,
                         "the %s in %s must be at least %d characters of letters, "
                         "digits and -._~+/= (delete the file to have a new one made)",
                         what, path, TOKEN_MIN);
        goto done;
    }
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        broker_log(b, TSL_LOG_WARNING,
                   "the %s file %s is readable by others (mode %04o): chmod 600 it", what,
                   path, (unsigned)(st.st_mode & 07777));
    memcpy(dst, text, (size_t)n + 1);

done:
    memset(text, 0, sizeof text);
    close(fd);
    return err;
}

int token_load_or_create(tsl_broker *b)
{
    int err = load_token(b, b->token_path, "admin token", b->token, sizeof b->token);
    if (err == 0)
        err = load_token(b, b->ts_token_path, "task server token", b->ts_token,
                         sizeof b->ts_token);
    if (err == 0 && strcmp(b->token, b->ts_token) == 0)
        err = tsl_seterr(TSL_EINVALID,
                         "the task server token in %s is the admin token: a Task Server "
                         "would hold admin power (delete %s to have a new one made)",
                         b->ts_token_path, b->ts_token_path);
    return err;
}

bool token_equal(const char *want, const char *given)
{
    size_t nw = strlen(want), have = given ? strlen(given) : 0;
    unsigned char diff = (unsigned char)(nw != have || nw == 0);
    for (size_t i = 0; i < nw; i++)
        diff |= (unsigned char)(want[i] ^ (i < have ? given[i] : 0));
    return diff == 0;
}

bool token_matches(const tsl_broker *b, const char *given)
{
    return token_equal(b->token, given);
}

const char *token_bearer(struct evhttp_request *req)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return NULL;
    auth += 7;
    while (*auth == ' ')
        auth++;
    return auth;
}
