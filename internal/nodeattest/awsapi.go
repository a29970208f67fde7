package nodeattest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// awsAPIConfig makes aws_iid read selectors from the EC2 and IAM APIs,
// as SPIRE's aws_iid does: the instance's tags (aws_iid:tag:KEY:VALUE),
// security groups (aws_iid:sg:id:ID, aws_iid:sg:name:NAME) and the IAM
// roles of its instance profile (aws_iid:iamrole:ARN). The credentials
// need ec2:DescribeInstances and iam:GetInstanceProfile in the attested
// account; with assume_role the server's own credentials assume
// arn:aws:iam::ACCOUNT:role/NAME in the document's account (SPIRE's
// assume_role) and read with that, so one server serves many accounts.
//
//	ec2_api:
//	  ec2_endpoint: https://ec2.us-east-1.amazonaws.com  # optional: default the document region's
//	  iam_endpoint: https://iam.amazonaws.com            # optional
//	  iam_roles: true                  # default true: look up the instance profile's roles
//	  access_key_id: AKIA...           # optional, with secret_access_key_file; default: the
//	  secret_access_key_file: /etc/tier0/aws-secret     # SDK's chain (env, shared config, instance role)
//	  assume_role: tier0-reader        # optional: a role of that name in each attested account
//	  sts_endpoint: https://sts.us-east-1.amazonaws.com  # optional
type awsAPIConfig struct {
	AssumeRole          string `yaml:"assume_role"`
	STSEndpoint         string `yaml:"sts_endpoint"`
	EC2Endpoint         string `yaml:"ec2_endpoint"`
	IAMEndpoint         string `yaml:"iam_endpoint"`
	IAMRoles            *bool  `yaml:"iam_roles"`
	AccessKeyID         string `yaml:"access_key_id"`
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
}

type awsAPI struct {
	cfg      awsAPIConfig
	aws      aws.Config
	iamRoles bool

	mu      sync.Mutex
	assumed map[string]aws.CredentialsProvider // by account, with assume_role
}

func newAWSAPI(c awsAPIConfig) (*awsAPI, error) {
	a := &awsAPI{cfg: c, iamRoles: c.IAMRoles == nil || *c.IAMRoles, assumed: map[string]aws.CredentialsProvider{}}
	if c.AssumeRole != "" && (strings.ContainsAny(c.AssumeRole, ":/ ") || len(c.AssumeRole) > 64) {
		return nil, fmt.Errorf("config: ec2_api assume_role %q: want a role name", c.AssumeRole)
	}
	for _, ep := range []string{c.EC2Endpoint, c.IAMEndpoint, c.STSEndpoint} {
		if ep != "" && !strings.HasPrefix(ep, "https://") && !strings.HasPrefix(ep, "http://") {
			return nil, fmt.Errorf("config: ec2_api endpoint %q: want an http(s) URL", ep)
		}
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(lookupTimeout)), awsconfig.WithRetryMaxAttempts(2)}
	if (c.AccessKeyID == "") != (c.SecretAccessKeyFile == "") {
		return nil, errors.New("config: ec2_api: access_key_id and secret_access_key_file go together")
	}
	if c.AccessKeyID != "" {
		secret, err := readFileLimited(c.SecretAccessKeyFile)
		if err != nil {
			return nil, fmt.Errorf("ec2_api secret_access_key_file: %w", err)
		}
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, strings.TrimSpace(string(secret)), "")))
	}
	var err error
	if a.aws, err = awsconfig.LoadDefaultConfig(context.Background(), opts...); err != nil {
		return nil, fmt.Errorf("ec2_api: %w", err)
	}
	return a, nil
}

// selectors looks the instance up in region and returns its tag, security
// group and IAM role selectors. An instance the API does not know (or
// that belongs to another account) is refused; an API that fails
// refuses too (ErrLookup).
func (a *awsAPI) selectors(ctx context.Context, d awsDocument) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	creds := a.credentials(d.AccountID)
	client := ec2.NewFromConfig(a.aws, func(o *ec2.Options) {
		o.Region = d.Region
		o.Credentials = creds
		if a.cfg.EC2Endpoint != "" {
			o.BaseEndpoint = aws.String(a.cfg.EC2Endpoint)
		}
	})
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{d.InstanceID}})
	if err != nil {
		if apiErrorCode(err) == "InvalidInstanceID.NotFound" {
			return nil, lookupDenied("aws_iid: EC2 DescribeInstances: instance %s not found in %s", d.InstanceID, d.Region)
		}
		return nil, lookupUnavailable("aws_iid: EC2 DescribeInstances %s in %s: %v", d.InstanceID, d.Region, err)
	}
	var found bool
	var sels []string
	var profileARN string
	for _, r := range out.Reservations {
		if aws.ToString(r.OwnerId) != d.AccountID {
			continue
		}
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) != d.InstanceID {
				continue
			}
			found = true
			for _, t := range in.Tags {
				sels = append(sels, "aws_iid:tag:"+aws.ToString(t.Key)+":"+aws.ToString(t.Value))
			}
			for _, g := range in.SecurityGroups {
				sels = append(sels, "aws_iid:sg:id:"+aws.ToString(g.GroupId), "aws_iid:sg:name:"+aws.ToString(g.GroupName))
			}
			if in.IamInstanceProfile != nil {
				profileARN = aws.ToString(in.IamInstanceProfile.Arn)
			}
		}
	}
	if !found {
		return nil, lookupDenied("aws_iid: EC2 DescribeInstances: instance %s of account %s not found in %s", d.InstanceID, d.AccountID, d.Region)
	}
	if profileARN != "" && a.iamRoles {
		roles, err := a.profileRoles(ctx, creds, profileARN)
		if err != nil {
			return nil, err
		}
		for _, r := range roles {
			sels = append(sels, "aws_iid:iamrole:"+r)
		}
	}
	return sels, nil
}

// profileRoles returns the role ARNs of an instance profile
// (arn:aws:iam::ACCOUNT:instance-profile/PATH/NAME).
func (a *awsAPI) profileRoles(ctx context.Context, creds aws.CredentialsProvider, profileARN string) ([]string, error) {
	_, res, ok := strings.Cut(profileARN, ":instance-profile/")
	if !ok || res == "" {
		return nil, lookupUnavailable("aws_iid: instance profile ARN %q", profileARN)
	}
	name := res[strings.LastIndex(res, "/")+1:]
	client := iam.NewFromConfig(a.aws, func(o *iam.Options) {
		o.Region = "us-east-1" // IAM is global; it signs as us-east-1
		o.Credentials = creds
		if a.cfg.IAMEndpoint != "" {
			o.BaseEndpoint = aws.String(a.cfg.IAMEndpoint)
		}
	})
	out, err := client.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	if err != nil {
		return nil, lookupUnavailable("aws_iid: IAM GetInstanceProfile %s: %v", name, err)
	}
	var roles []string
	if out.InstanceProfile != nil {
		for _, r := range out.InstanceProfile.Roles {
			roles = append(roles, aws.ToString(r.Arn))
		}
	}
	return roles, nil
}

// credentials are the server's own, or with assume_role those of the
// role in account (cached, refreshed before they expire).
func (a *awsAPI) credentials(account string) aws.CredentialsProvider {
	if a.cfg.AssumeRole == "" {
		return a.aws.Credentials
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.assumed[account]; ok {
		return p
	}
	client := sts.NewFromConfig(a.aws, func(o *sts.Options) {
		if o.Region == "" {
			o.Region = "us-east-1"
		}
		if a.cfg.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(a.cfg.STSEndpoint)
		}
	})
	arn := "arn:aws:iam::" + account + ":role/" + a.cfg.AssumeRole
	p := aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(client, arn, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = "tier0-aws-iid"
	}))
	a.assumed[account] = p
	return p
}

func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
