/*
 * token.c - the admin bearer token: read from its file, or created there
 * with mode 0600 and 32 random bytes (hex) on first start; compared in
 * constant time.
 *
 * Used by: broker.c (start), http.c (every admin request).
 * Needs: broker_internal.h, getrandom(2).
 */
#include "broker_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_MIN 16

static int create_token(tsl_broker *b)
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
            err = tsl_seterr(TSL_ERROR, "cannot get random bytes for the admin token: %s",
                             strerror(errno));
            goto done;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(text + 2 * i, 3, "%02x", raw[i]);
    fd = open(b->token_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot create the admin token file %s: %s", b->token_path,
                         strerror(errno));
        goto done;
    }
    size_t len = strlen(text);
    text[len] = '\n';
    if (fchmod(fd, 0600) < 0 || write(fd, text, len + 1) != (ssize_t)(len + 1) || fsync(fd) < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot write the admin token file %s: %s", b->token_path,
                         strerror(errno));
        unlink(b->token_path);
        goto done;
    }
    text[len] = '\0';
    snprintf(b->token, sizeof b->token, "%s", text);
    broker_log(b, TSL_LOG_INFO, "Created the admin token file %s (mode 0600)", b->token_path);

done:
    if (fd >= 0)
        close(fd);
    memset(raw, 0, sizeof raw);
    memset(text, 0, sizeof text);
    return err;
}

int token_load_or_create(tsl_broker *b)
{
    char text[sizeof b->token + 2];
    struct stat st;
    int err = 0;
    int fd = open(b->token_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0 && errno == ENOENT)
        return create_token(b);
    if (fd < 0)
        return tsl_seterr(TSL_ERROR, "cannot open the admin token file %s: %s", b->token_path,
                          strerror(errno));
    ssize_t n = read(fd, text, sizeof text - 1);
    if (n < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot read the admin token file %s: %s", b->token_path,
                         strerror(errno));
        goto done;
    }
    text[n] = '\0';
    while (n > 0 && isspace((unsigned char)text[n - 1]))
        text[--n] = '\0';
    if ((size_t)n >= sizeof b->token) {
        err = tsl_seterr(TSL_EINVALID, "the admin token in %s is longer than %zu characters",
                         b->token_path, sizeof b->token - 1);
        goto done;
    }
    if (n < TOKEN_MIN || strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789-._~+/=") != (size_t)n) {
        err = tsl_seterr(TSL_EINVALID,
                         "the admin token in %s must be at least %d characters of letters, "
                         "digits and -._~+/= (delete the file to have a new one made)",
                         b->token_path, TOKEN_MIN);
        goto done;
    }
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        broker_log(b, TSL_LOG_WARNING,
                   "the admin token file %s is readable by others (mode %04o): chmod 600 it",
                   b->token_path, (unsigned)(st.st_mode & 07777));
    memcpy(b->token, text, (size_t)n + 1);

done:
    memset(text, 0, sizeof text);
    close(fd);
    return err;
}

bool token_matches(const tsl_broker *b, const char *given)
{
    size_t want = strlen(b->token), have = given ? strlen(given) : 0;
    unsigned char diff = (unsigned char)(want != have);
    for (size_t i = 0; i < want; i++)
        diff |= (unsigned char)(b->token[i] ^ (i < have ? given[i] : 0));
    return diff == 0;
}
