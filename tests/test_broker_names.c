/*
 * test_broker_names.c - the broker's admin side for an estate with
 * overlapping subnets and shared computer names: GET /v1/explain takes a
 * computer name as well as a GUID (an ambiguous one is a 400 listing the
 * GUIDs), and GET /v1/reports/subnet-conflicts lists every conflict with
 * the clients it decides.  The broker runs in-process on 127.0.0.1 port 0.
 */
#include "broker.h"
#include "broker_client.h"
#include "harness.h"

#include <sys/stat.h>

static const char inventory[] =
    "{\"sites\": ["
    "  {\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"]},"
    "  {\"name\": \"Paris\", \"subnets\": [\"10.10.0.0/16\", \"10.20.0.0/16\"]},"
    "  {\"name\": \"UK\", \"subnets\": [\"10.0.0.0/8\"]}],"
    " \"task_servers\": ["
    "  {\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"]},"
    "  {\"name\": \"ts-par-01\", \"ip\": \"10.20.0.5\", \"sites\": [\"Paris\"]}],"
    " \"clients\": ["
    "  {\"guid\": \"A1\", \"name\": \"LON-PC-0001\", \"ip\": \"10.10.3.17\"},"
    "  {\"guid\": \"K1\", \"name\": \"KIOSK\", \"ip\": \"10.20.9.9\"},"
    "  {\"guid\": \"K2\", \"name\": \"kiosk\", \"ip\": \"10.10.9.9\"}]}";

typedef struct fixture {
    char dir[512], db[600];
    tsl_broker *b;
    int port;
    char auth[200];
} fixture;

static bool start(fixture *f)
{
    tsl_store *st = NULL;
    tsl_broker_config cfg;

    static int n;

    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/b%d", tsl_test_tmpdir(), n++);
    mkdir(f->dir, 0700);
    snprintf(f->db, sizeof f->db, "%s/store.db", f->dir);
    if (tsl_store_open(&st, f->db, 0) < 0 ||
        tsl_store_import_json(st, inventory, strlen(inventory), "fixture") < 0) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_store_free(st);
        return false;
    }
    tsl_store_free(st);
    tsl_broker_config_init(&cfg);
    cfg.db_path = f->db;
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 2;
    cfg.log_level = TSL_LOG_ERROR;
    if (tsl_broker_new(&f->b, &cfg) < 0 || tsl_broker_start(f->b) < 0) {
        fprintf(stderr, "broker: %s\n", tsl_error_last());
        tsl_broker_free(f->b);
        f->b = NULL;
        return false;
    }
    f->port = tsl_broker_bound_port(f->b);
    snprintf(f->auth, sizeof f->auth, "Authorization: Bearer %s\r\n",
             tsl_broker_admin_token(f->b));
    return true;
}

static void stop(fixture *f)
{
    if (f->b) {
        tsl_broker_stop(f->b);
        tsl_broker_join(f->b);
        tsl_broker_free(f->b);
        f->b = NULL;
    }
}

TEST(broker__explain_takes_a_computer_name_and_refuses_an_ambiguous_one)
{
    fixture f;
    http_resp r1, r2;
    int s3;

    CHECK(start(&f));
    int s1 = http_do(f.port, "GET", "/v1/explain?client=lon-pc-0001", f.auth, NULL, &r1);
    int s2 = http_do(f.port, "GET", "/v1/explain?client=Kiosk", f.auth, NULL, &r2);
    const char *b3 = http_get_body(f.port, "/v1/explain?client=K2", f.auth, &s3);
    stop(&f);
    CHECK_INT(s1, 200);
    CHECK_CONTAINS(r1.body, "\"site\":\"London\"");
    CHECK_CONTAINS(r1.body, "10.10.0.0/16");
    CHECK_INT(s2, 400);
    CHECK_CONTAINS(r2.body, "2 clients are named \\\"Kiosk\\\": K1 (10.20.9.9), K2 (10.10.9.9); "
                            "name one by its GUID");
    CHECK_INT(s3, 200);
    CHECK_CONTAINS(b3, "\"site\":\"London\"");
    http_resp_free(&r1);
    http_resp_free(&r2);
}

TEST(broker__subnet_conflicts_report_lists_conflicts_and_their_clients)
{
    fixture f;
    http_resp r1, r2;

    CHECK(start(&f));
    int s1 = http_do(f.port, "GET", "/v1/reports/subnet-conflicts", f.auth, NULL, &r1);
    int s2 = http_do(f.port, "GET", "/v1/reports/subnet-conflicts?format=csv", f.auth, NULL, &r2);
    stop(&f);
    CHECK_INT(s1, 200);
    CHECK_CONTAINS(r1.body, "{\"subnet\":\"10.10.0.0/16\",\"kind\":\"duplicate+nested\","
                            "\"site\":\"London\",\"others\":[{\"site\":\"Paris\",\"subnet\":"
                            "\"10.10.0.0/16\"},{\"site\":\"UK\",\"subnet\":\"10.0.0.0/8\"}],"
                            "\"client_count\":2,\"clients\":[{\"guid\":\"A1\",\"name\":"
                            "\"LON-PC-0001\",\"ip\":\"10.10.3.17\"},{\"guid\":\"K2\",\"name\":"
                            "\"kiosk\",\"ip\":\"10.10.9.9\"}]}");
    CHECK_INT(s2, 200);
    CHECK_CONTAINS(r2.body, "10.20.0.0/16,nested,Paris,UK 10.0.0.0/8,K1,KIOSK,10.20.9.9\n");
    http_resp_free(&r1);
    http_resp_free(&r2);
}

TEST(broker__inventory_import_answers_its_warnings_and_refuses_typos)
{
    fixture f;
    http_resp r1, r2;

    CHECK(start(&f));
    int s1 = http_do(f.port, "POST", "/v1/inventory", f.auth,
                     "{\"sites\":[{\"name\":\"Rome\",\"subnets\":[\"10.20.0.0/16\"]}],"
                     "\"clients\":[{\"guid\":\"Z1\",\"name\":\"NO-IP\"}]}",
                     &r1);
    int s2 = http_do(f.port, "POST", "/v1/inventory", f.auth,
                     "{\"clients\":[{\"guid\":\"Z2\",\"ips\":[\"10.1.1.1\"]}]}", &r2);
    stop(&f);
    CHECK_INT(s1, 200);
    CHECK_CONTAINS(r1.body, "\"warnings\":[\"warning: 2 subnets are claimed by more than one "
                            "site");
    CHECK_CONTAINS(r1.body, "\"warning:   10.20.0.0/16 of site Paris, also in Rome "
                            "(10.20.0.0/16), UK (10.0.0.0/8): its clients get Paris\"");
    CHECK_CONTAINS(r1.body, "\"warning: 1 client has neither an IP nor a site, so the default "
                            "logic offers it every Task Server: NO-IP\"]}");
    CHECK_INT(s2, 400);
    CHECK_CONTAINS(r2.body, "POST /v1/inventory: clients[0] \\\"Z2\\\": unknown field "
                            "\\\"ips\\\": did you mean \\\"ip\\\"?");
    http_resp_free(&r1);
    http_resp_free(&r2);
}

int main(void)
{
    RUN(broker__inventory_import_answers_its_warnings_and_refuses_typos);
    RUN(broker__explain_takes_a_computer_name_and_refuses_an_ambiguous_one);
    RUN(broker__subnet_conflicts_report_lists_conflicts_and_their_clients);
    return tsl_test_main();
}
