/*
 * text.h - checks on text that comes from outside: the one definition of
 * valid UTF-8 every edge shares (CSV import today; JSON bodies are checked
 * by jansson as they are parsed).
 *
 * Needs: nothing.
 */
#ifndef TSL_TEXT_H
#define TSL_TEXT_H

#include "common.h"

/* True when s[0..len) is well-formed UTF-8 (RFC 3629): no overlong forms,
 * no surrogates, nothing past U+10FFFF, no truncated sequence.  NUL bytes
 * are valid UTF-8; callers that keep C strings refuse them first. */
TSL_INTERNAL bool tsl_utf8_valid(const char *s, size_t len);

#endif
